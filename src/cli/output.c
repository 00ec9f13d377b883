/* Messages, exit codes, JSON and the progress bar of the CLI. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util/util.h"

/* Appends `text` with every control byte written as \xNN. */
static void escape_into(sm_buf *out, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			sm_buf_printf(out, "\\x%02x", *p);
		else
			sm_buf_putc(out, (char)*p);
	}
}

const char *cli_show(const char *text)
{
	/* a ring of buffers, so one printf may show several values */
	static sm_buf ring[8];
	static unsigned next;
	sm_buf *slot = &ring[next++ % 8];

	slot->len = 0;
	escape_into(slot, text ? text : "");
	return slot->data ? slot->data : "";
}

/*
 * Writes one line to stderr with a single write(), so lines of processes
 * sharing a terminal or log do not interleave within a line.
 */
static void write_line(const char *prefix, const char *text)
{
	sm_buf line = SM_BUF_INIT(0);

	sm_buf_puts(&line, prefix);
	/* names from the command line or a file may contain newlines or terminal
	 * escapes, so control bytes are escaped and the line stays one line */
	escape_into(&line, text);
	sm_buf_putc(&line, '\n');
	if (line.data) {
		fflush(stderr);
		if (write(STDERR_FILENO, line.data, line.len) < 0) {
			/* nothing sensible is left to report to */
		}
	}
	sm_buf_release(&line);
}

static void vprint_error(const cli_context *ctx, const char *fmt, va_list ap)
{
	char text[4096];

	vsnprintf(text, sizeof(text), fmt, ap);
	write_line(ctx->color ? "skillmeat: \033[31merror:\033[0m " : "skillmeat: error: ", text);
}

void cli_error(const cli_context *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint_error(ctx, fmt, ap);
	va_end(ap);
}

int cli_usage_error(const cli_context *ctx, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cli_error(ctx, "%s; run 'skillmeat %s --help' for usage", text,
		  ctx->command ? ctx->command : "");
	return EXIT_USAGE;
}

int cli_exit_code(int rc)
{
	switch (rc) {
	case SM_OK: return EXIT_OK;
	case SM_ENOTFOUND: return EXIT_NOTFOUND;
	case SM_EEXISTS: return EXIT_EXISTS;
	case SM_EREADONLY: return EXIT_READONLY;
	case SM_EAUTH: return EXIT_AUTH;
	case SM_EINTEGRITY: return EXIT_INTEGRITY;
	case SM_ENETWORK: return EXIT_NETWORK;
	case SM_EINVALID: return EXIT_INVALID;
	case SM_ECONFLICT: return EXIT_CONFLICT;
	default: return EXIT_ERROR;
	}
}

int cli_fail(const cli_context *ctx, int rc)
{
	const char *message = sm_error_message();

	cli_error(ctx, "%s", *message ? message : sm_error_name(rc));
	return cli_exit_code(rc);
}

void cli_note(const cli_context *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->quiet)
		return;
	va_start(ap, fmt);
	vfprintf(ctx->json ? stderr : stdout, fmt, ap);
	va_end(ap);
	fputc('\n', ctx->json ? stderr : stdout);
}

void cli_print_json(json_t *value)
{
	if (!value) {
		fputs("null\n", stdout);
		return;
	}
	json_dumpf(value, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
	json_decref(value);
}

void cli_format_size(uint64_t bytes, char *out, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double value = (double)bytes;
	size_t unit = 0;

	while (value >= 1024 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024;
		unit++;
	}
	if (unit == 0)
		snprintf(out, size, "%llu B", (unsigned long long)bytes);
	else
		snprintf(out, size, "%.1f %s", value, units[unit]);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static void draw_bar(cli_progress *p, uint64_t done, uint64_t total, double now)
{
	char left[256], bytes_done[32], bytes_total[32], speed[32], eta[32] = "";
	double elapsed = now - p->started, rate = elapsed > 0 ? (double)done / elapsed : 0;
	int width = terminal_width(), bar, filled, percent;

	percent = total ? (int)(done * 100 / total) : 0;
	cli_format_size(done, bytes_done, sizeof(bytes_done));
	cli_format_size(total, bytes_total, sizeof(bytes_total));
	cli_format_size((uint64_t)rate, speed, sizeof(speed));
	if (rate > 0 && total > done) {
		unsigned long left_s = (unsigned long)((double)(total - done) / rate);

		snprintf(eta, sizeof(eta), " %lu:%02lu left", left_s / 60, left_s % 60);
	}
	snprintf(left, sizeof(left), " %3d%% %s/%s %s/s%s", percent, bytes_done,
		 bytes_total, speed, eta);
	/* on a narrow terminal drop the time left, then speed and sizes, so the
	 * line never wraps (a wrapped line cannot be redrawn with \r) */
	if ((int)(strlen(p->label) + strlen(left)) >= width)
		snprintf(left, sizeof(left), " %3d%% %s/%s", percent, bytes_done, bytes_total);
	if ((int)(strlen(p->label) + strlen(left)) >= width)
		snprintf(left, sizeof(left), " %3d%%", percent);
	if ((int)(strlen(p->label) + strlen(left)) >= width)
		left[0] = '\0';

	/* the bar takes what the text leaves, clamped to the terminal */
	bar = width - (int)strlen(p->label) - (int)strlen(left) - 4;
	if (bar > 40)
		bar = 40;
	if ((int)strlen(p->label) + 1 >= width)
		return;
	fprintf(stderr, "\r%s ", p->label);
	if (bar >= 5) {
		filled = total ? (int)((double)bar * (double)done / (double)total) : 0;
		fputc('[', stderr);
		for (int i = 0; i < bar; i++)
			fputc(i < filled ? '#' : '-', stderr);
		fputc(']', stderr);
	}
	fputs(left, stderr);
	fputs("\033[K", stderr);
	fflush(stderr);
	p->drawn = 1;
	p->last_draw = now;
}

static void on_progress(uint64_t done, uint64_t total, void *payload)
{
	cli_progress *p = payload;
	double now;

	if (!p->ctx->progress_tty || p->ctx->no_progress || p->ctx->quiet || p->ctx->json)
		return;
	now = now_seconds();
	/* at most ten redraws a second, but always the final 100% */
	if (done < total && p->drawn && now - p->last_draw < 0.1)
		return;
	if (p->finished)
		return;
	draw_bar(p, done, total, now);
	if (total && done >= total)
		p->finished = 1;
}

static void on_message(sm_log_level level, const char *text, void *payload)
{
	cli_progress *p = payload;

	if (level == SM_LOG_DEBUG && !p->ctx->verbose)
		return;
	if (level == SM_LOG_INFO && p->ctx->quiet)
		return;
	if (p->drawn && !p->finished)
		fputs("\r\033[K", stderr);
	write_line(level == SM_LOG_WARN ? "skillmeat: warning: " : "skillmeat: ", text);
}

void cli_callbacks_init(sm_callbacks *callbacks, cli_progress *progress,
			const cli_context *ctx, const char *label)
{
	memset(progress, 0, sizeof(*progress));
	progress->ctx = ctx;
	progress->label = label;
	progress->started = now_seconds();
	callbacks->progress = on_progress;
	callbacks->message = on_message;
	callbacks->payload = progress;
}

void cli_progress_end(cli_progress *progress)
{
	if (progress->drawn)
		fputc('\n', stderr);
	progress->drawn = 0;
}
