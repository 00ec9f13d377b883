/*
 * The plug-in loader: finds shared objects in $SKILLMEAT_PLUGIN_PATH and
 * $SKILLMEAT_HOME/plugins, checks who could have written them, loads them
 * and lets each register its connector types through a host table.
 *
 * A file is loaded only when it is a regular file (not a symbolic link)
 * owned by the user or root and not writable by group or others, in a
 * directory that passes the same test up to "/". The check and the load
 * use the same open descriptor (dlopen of /proc/self/fd/N), so the file
 * cannot be swapped between them. A plug-in runs inside the process:
 * these checks decide whom to trust, they cannot contain a plug-in that
 * crashes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skillmeat/plugin.h"
#include "util/util.h"
#include "config/sharing.h"
#include "vault/plugins.h"

/* One plug-in file found by the loader, or a directory it refused. */
typedef struct plugin {
	sm_plugin_host host;   /* host_data points back to this struct */
	char *path;
	char **types;
	size_t ntypes;
	unsigned int abi_version;
	int loaded;
	int in_init;           /* register_vault works only during init */
	int refusal_code;      /* first registration the host refused, or 0 */
	char *refusal;
	char *error;
	void *handle;
	int fd;                /* the file loaded as /proc/self/fd/<fd>, or -1 */
	dev_t dev;
	ino_t ino;
} plugin;

static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;
static plugin **plugins;
static size_t nplugins;
static int plugins_scanned;
/* set while this thread loads, so a plug-in's init cannot deadlock the loader */
static _Thread_local int loading;

/* ---- checks ---------------------------------------------------------- */

int sm_plugin_path_split(const char *list, char ***out, size_t *count)
{
	char **items = NULL;
	size_t n = 0;
	const char *p = list ? list : "";
	int rc = 0;

	*out = NULL;
	*count = 0;
	items = calloc(strlen(p) / 2 + 2, sizeof(char *));
	if (!items)
		return sm_error_set(SM_ENOMEM, "out of memory");
	while (*p) {
		size_t len = strcspn(p, ":");

		if (len > 0) {
			items[n] = sm_strndup(p, len);
			if (!items[n]) {
				rc = SM_ENOMEM;
				goto done;
			}
			n++;
		}
		p += len;
		if (*p == ':')
			p++;
	}
done:
	if (rc) {
		sm_str_array_free(items, n);
		return rc;
	}
	*out = items;
	*count = n;
	return 0;
}

int sm_plugin_type_valid(const char *type)
{
	size_t len = type ? strlen(type) : 0;

	if (len == 0 || len > SM_PLUGIN_TYPE_MAX)
		return 0;
	for (const char *c = type; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
			return 0;
	return 1;
}

int sm_plugin_check_file(const struct stat *st, const char *path, uid_t uid)
{
	if (S_ISLNK(st->st_mode))
		return sm_error_set(SM_EREADONLY, "refused plug-in '%s': it is a symbolic link; "
				    "install the file itself", path);
	if (!S_ISREG(st->st_mode))
		return sm_error_set(SM_EREADONLY, "refused plug-in '%s': it is not a regular file", path);
	if (st->st_uid != uid && st->st_uid != 0)
		return sm_error_set(SM_EREADONLY, "refused plug-in '%s': it is owned by uid %u, "
				    "not by you or root", path, (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return sm_error_set(SM_EREADONLY, "refused plug-in '%s': it is writable by group or "
				    "others; run 'chmod go-w' on it", path);
	return 0;
}

/* Checks one directory's status; `path` names it in the message. */
static int check_dir_status(const struct stat *st, const char *path, uid_t uid)
{
	if (!S_ISDIR(st->st_mode))
		return sm_error_set(SM_EINVALID, "plug-in directory '%s' is not a directory", path);
	if (st->st_uid != uid && st->st_uid != 0)
		return sm_error_set(SM_EREADONLY, "refused plug-in directory '%s': it is owned by "
				    "uid %u, not by you or root", path, (unsigned)st->st_uid);
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_uid == 0 && (st->st_mode & S_ISVTX)))
		return sm_error_set(SM_EREADONLY, "refused plug-in directory '%s': it is writable by "
				    "group or others; run 'chmod go-w' on it", path);
	return 0;
}

int sm_plugin_check_dir(const char *path, uid_t uid)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int rc;

	if (path[0] != '/')
		return sm_error_set(SM_EINVALID, "plug-in directory '%s' is not an absolute path", path);
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return sm_error_set(SM_EINVALID, "plug-in directory path is too long");

	/* the directory itself, then each parent up to "/" */
	for (;;) {
		const char *current = dir[0] ? dir : "/";

		if (lstat(current, &st) != 0)
			return sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO, errno,
						  "cannot read plug-in directory '%s'", current);
		if (S_ISLNK(st.st_mode))
			return sm_error_set(SM_EINVALID, "plug-in directory '%s' is a symbolic link",
					    current);
		rc = check_dir_status(&st, current, uid);
		if (rc)
			return rc;
		if (!dir[0])
			break;
		slash = strrchr(dir, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return 0;
}

/* ---- the host table -------------------------------------------------- */

/* Returns the plug-in that registered `type`, or NULL. */
static plugin *type_owner(const char *type)
{
	for (size_t i = 0; i < nplugins; i++)
		for (size_t j = 0; j < plugins[i]->ntypes; j++)
			if (strcmp(plugins[i]->types[j], type) == 0)
				return plugins[i];
	return NULL;
}

/* Checks a registration by plug-in `p`; the message does not name `p`. */
static int check_registration(const plugin *p, const char *type, unsigned int vault_abi_version,
			      sm_vault_ctor ctor)
{
	plugin *owner;

	if (!sm_plugin_type_valid(type))
		return sm_error_set(SM_EINVALID, "invalid connector type '%s': use 1-%d letters, "
				    "digits, '-' or '_'",
				    type && !sm_has_control_chars(type) ? type : "?", SM_PLUGIN_TYPE_MAX);
	if (vault_abi_version != SM_VAULT_ABI_VERSION)
		return sm_error_set(SM_EINVALID, "connector '%s' is built for vault ABI %u, this "
				    "skillmeat speaks vault ABI %u; rebuild the plug-in", type,
				    vault_abi_version, SM_VAULT_ABI_VERSION);
	if (!ctor)
		return sm_error_set(SM_EINVALID, "connector '%s' has no constructor", type);
	if (sm_vault_type_known(type) == 1)
		return sm_error_set(SM_EEXISTS, "connector type '%s' is built into skillmeat; give "
				    "the plug-in's type another name", type);
	/* p is not in the list yet, so its own earlier types are checked here */
	for (size_t i = 0; i < p->ntypes; i++)
		if (strcmp(p->types[i], type) == 0)
			return sm_error_set(SM_EEXISTS, "connector type '%s' is registered twice by "
					    "the same plug-in", type);
	owner = type_owner(type);
	if (owner)
		return sm_error_set(SM_EEXISTS, "connector type '%s' is registered already by plug-in "
				    "'%s', which comes first in the search order", type, owner->path);
	if (sm_vault_type_known(type))
		return sm_error_set(SM_EEXISTS, "connector type '%s' is registered already by the "
				    "program", type);
	return 0;
}

/*
 * register_vault of the host table. A refused registration fails the
 * whole plug-in even when its init ignores the error, so a plug-in never
 * loads with part of its types.
 */
static int host_register_vault(const sm_plugin_host *host, const char *type,
			       unsigned int vault_abi_version, sm_vault_ctor ctor)
{
	plugin *p = host ? host->host_data : NULL;
	char **grown;
	int rc;

	if (!p || !p->in_init)
		return sm_error_set(SM_EINVALID, "a plug-in called register_vault outside "
				    "skillmeat_plugin_init");
	rc = check_registration(p, type, vault_abi_version, ctor);
	if (rc) {
		if (!p->refusal_code) {
			p->refusal_code = rc;
			p->refusal = sm_strdup(sm_error_message());
		}
		return rc;
	}

	grown = realloc(p->types, (p->ntypes + 1) * sizeof(char *));
	if (!grown)
		return sm_error_set(SM_ENOMEM, "out of memory");
	p->types = grown;
	p->types[p->ntypes] = sm_strdup(type);
	if (!p->types[p->ntypes])
		return SM_ENOMEM;
	rc = sm_vault_register(type, vault_abi_version, ctor);
	if (rc) {
		free(p->types[p->ntypes]);
		return rc;
	}
	p->ntypes++;
	return 0;
}

/* ---- loading one file ------------------------------------------------ */

static void plugin_free(plugin *p)
{
	if (!p)
		return;
	sm_str_array_free(p->types, p->ntypes);
	free(p->path);
	free(p->refusal);
	free(p->error);
	free(p);
}

/* Undoes what a failed plug-in registered and closes it. */
static void plugin_unload(plugin *p)
{
	for (size_t i = 0; i < p->ntypes; i++)
		sm_vault_unregister(p->types[i]);
	sm_str_array_free(p->types, p->ntypes);
	p->types = NULL;
	p->ntypes = 0;
	if (p->handle)
		dlclose(p->handle);
	p->handle = NULL;
}

/*
 * Returns dlerror()'s text without the leading "<file>: " when the file is
 * `loaded_as`, so the message names the plug-in once, by its real path.
 */
static const char *dl_reason(const char *loaded_as)
{
	const char *text = dlerror();
	size_t len = strlen(loaded_as);

	if (!text)
		return "unknown error";
	if (strncmp(text, loaded_as, len) == 0 && text[len] == ':' && text[len + 1] == ' ')
		return text + len + 2;
	return text;
}

/* Opens `name` in `dirfd` without following a link and checks it. */
static int open_checked(int dirfd, const char *name, const char *path, int *fd, struct stat *st)
{
	struct stat before;
	int rc;

	*fd = -1;
	/* lstat first, so a device or FIFO is never opened */
	if (fstatat(dirfd, name, &before, AT_SYMLINK_NOFOLLOW) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot read plug-in '%s'", path);
	rc = sm_plugin_check_file(&before, path, geteuid());
	if (rc)
		return rc;
	*fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (*fd < 0)
		return sm_error_set_errno(errno == EACCES ? SM_EREADONLY : SM_EIO, errno,
					  "cannot open plug-in '%s'", path);
	if (fstat(*fd, st) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot read plug-in '%s'", path);
	if (st->st_dev != before.st_dev || st->st_ino != before.st_ino)
		return sm_error_set(SM_ECONFLICT, "refused plug-in '%s': it was replaced while "
				    "being checked", path);
	return sm_plugin_check_file(st, path, geteuid());
}

/*
 * Loads the checked file open on `fd` into p->handle and runs its init.
 * The dynamic loader records the object under the name /proc/self/fd/<fd>,
 * and a later dlopen() of a name it has recorded returns that object. So
 * the caller keeps the descriptor open while the object is loaded, and the
 * name never refers to another file.
 */
static int load_checked(plugin *p, int fd)
{
	char proc_path[64];
	const unsigned int *abi;
	sm_plugin_init_fn init;
	void *symbol;
	int rc;

	/* loading the descriptor's file means loading what was checked */
	snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
	dlerror();
	p->handle = dlopen(proc_path, RTLD_NOW | RTLD_LOCAL);
	if (!p->handle)
		return sm_error_set(SM_EINVALID, "cannot load plug-in '%s': %s", p->path,
				    dl_reason(proc_path));

	abi = dlsym(p->handle, SM_PLUGIN_ABI_SYMBOL);
	if (!abi)
		return sm_error_set(SM_EINVALID, "'%s' is not a skillmeat plug-in: it does not export "
				    "%s", p->path, SM_PLUGIN_ABI_SYMBOL);
	p->abi_version = *abi;
	if (p->abi_version != SM_PLUGIN_ABI_VERSION)
		return sm_error_set(SM_EINVALID, "plug-in '%s' speaks plug-in ABI %u, this skillmeat "
				    "speaks %u; rebuild it against this version's headers",
				    p->path, p->abi_version, SM_PLUGIN_ABI_VERSION);
	symbol = dlsym(p->handle, SM_PLUGIN_INIT_SYMBOL);
	if (!symbol)
		return sm_error_set(SM_EINVALID, "'%s' is not a skillmeat plug-in: it does not export "
				    "%s", p->path, SM_PLUGIN_INIT_SYMBOL);
	/* POSIX requires function pointers to have the representation of void * */
	memcpy(&init, &symbol, sizeof(init));

	p->host.abi_version = SM_PLUGIN_ABI_VERSION;
	p->host.vault_abi_version = SM_VAULT_ABI_VERSION;
	p->host.register_vault = host_register_vault;
	p->host.host_data = p;
	sm_error_clear();
	p->in_init = 1;
	rc = init(&p->host);
	p->in_init = 0;
	if (p->refusal_code) {
		return sm_error_set(p->refusal_code, "plug-in '%s' failed to initialise: %s", p->path,
				    p->refusal ? p->refusal : sm_error_name(p->refusal_code));
	}
	if (rc) {
		int code = rc < 0 ? rc : SM_ERROR;

		if (!*sm_error_message())
			sm_error_set(code, "%s returned %d without setting a message",
				     SM_PLUGIN_INIT_SYMBOL, rc);
		return sm_error_wrap(code, "plug-in '%s' failed to initialise", p->path);
	}
	/*
	 * A plug-in without types serves nothing, and each loaded one keeps a
	 * descriptor open, so thousands of them would exhaust the descriptors.
	 */
	if (p->ntypes == 0)
		return sm_error_set(SM_EINVALID, "plug-in '%s' registered no connector types; its "
				    "%s must call register_vault", p->path, SM_PLUGIN_INIT_SYMBOL);
	return 0;
}

/* Adds `p` to the list; takes ownership. */
static int remember(plugin *p)
{
	plugin **grown = realloc(plugins, (nplugins + 1) * sizeof(*plugins));

	if (!grown) {
		plugin_free(p);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	plugins = grown;
	plugins[nplugins++] = p;
	return 0;
}

static void warn(const sm_callbacks *callbacks, sm_log_level level, const char *text)
{
	if (callbacks && callbacks->message)
		callbacks->message(level, text, callbacks->payload);
}

/* Failures warned about one by one; 'plugin list' shows the rest. */
#define MAX_FAILURE_WARNINGS 20
static size_t failure_warnings;

/* Warns about one failed plug-in, up to MAX_FAILURE_WARNINGS per process. */
static void warn_failure(const sm_callbacks *callbacks, const char *text)
{
	if (failure_warnings++ < MAX_FAILURE_WARNINGS)
		warn(callbacks, SM_LOG_WARN, text);
}

/* Records a failure for `path` (a file or a directory) and warns about it. */
static int remember_failure(const char *path, const sm_callbacks *callbacks)
{
	plugin *p = calloc(1, sizeof(*p));

	if (!p)
		return sm_error_set(SM_ENOMEM, "out of memory");
	p->fd = -1;
	p->path = sm_strdup(path);
	p->error = sm_strdup(sm_error_message());
	if (!p->path || !p->error) {
		plugin_free(p);
		return SM_ENOMEM;
	}
	warn_failure(callbacks, p->error);
	return remember(p);
}

/* Returns 1 when the loader still has an object loaded as /proc/self/fd/<fd>. */
static int still_loaded(int fd)
{
	char proc_path[64];
	void *handle;

	snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", fd);
	handle = dlopen(proc_path, RTLD_LAZY | RTLD_NOLOAD);
	if (!handle)
		return 0;
	dlclose(handle);
	return 1;
}

static int already_found(dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < nplugins; i++)
		if (plugins[i]->dev == dev && plugins[i]->ino == ino)
			return 1;
	return 0;
}

/* Loads file `name` of directory `dirfd` (named `dir`). Fails only on ENOMEM. */
static int load_file(int dirfd, const char *dir, const char *name, const sm_callbacks *callbacks)
{
	plugin *p = calloc(1, sizeof(*p));
	struct stat st;
	int fd = -1, rc;

	if (!p)
		return sm_error_set(SM_ENOMEM, "out of memory");
	p->fd = -1;
	p->path = sm_path_join(dir, name);
	if (!p->path) {
		plugin_free(p);
		return SM_ENOMEM;
	}

	rc = open_checked(dirfd, name, p->path, &fd, &st);
	if (!rc && already_found(st.st_dev, st.st_ino)) {
		/* the same file through another directory entry: load it once */
		close(fd);
		plugin_free(p);
		return 0;
	}
	if (!rc) {
		p->dev = st.st_dev;
		p->ino = st.st_ino;
		rc = load_checked(p, fd);
	}
	if (rc) {
		/* keep the message: unloading calls into the registry, which sets its own */
		p->error = sm_strdup(sm_error_message());
		if (p->handle) {
			plugin_unload(p);
			/* an object that dlclose() could not unload keeps its descriptor */
			if (still_loaded(fd)) {
				p->fd = fd;
				fd = -1;
			}
		}
	} else {
		p->loaded = 1;
		p->fd = fd;
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	if (rc && !p->error) {
		plugin_free(p);
		return SM_ENOMEM;
	}
	if (rc)
		warn_failure(callbacks, p->error);
	return remember(p);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns 1 for "<something>.so" that is not hidden. */
static int is_plugin_name(const char *name)
{
	size_t len = strlen(name);

	return name[0] != '.' && len > 3 && strcmp(name + len - 3, ".so") == 0;
}

/* Collects the sorted plug-in file names of an open directory. */
static int list_names(int dirfd, char ***out, size_t *count)
{
	int copy = dup(dirfd);
	DIR *dir = copy >= 0 ? fdopendir(copy) : NULL;
	struct dirent *entry;
	char **items = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!dir) {
		if (copy >= 0)
			close(copy);
		return sm_error_set_errno(SM_EIO, errno, "cannot list a plug-in directory");
	}
	while ((entry = readdir(dir)) != NULL) {
		if (!is_plugin_name(entry->d_name))
			continue;
		if (n == cap) {
			char **grown;

			cap = cap ? cap * 2 : 8;
			grown = realloc(items, cap * sizeof(char *));
			if (!grown) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
			items = grown;
		}
		items[n] = sm_strdup(entry->d_name);
		if (!items[n]) {
			rc = SM_ENOMEM;
			goto done;
		}
		n++;
	}
	if (n > 1)
		qsort(items, n, sizeof(char *), compare_names);
done:
	closedir(dir);
	if (rc) {
		sm_str_array_free(items, n);
		return rc;
	}
	*out = items;
	*count = n;
	return 0;
}

/*
 * Loads every plug-in of directory `dir`. A missing directory is skipped
 * quietly; a refused one is remembered so that 'plugin list' shows it.
 * Fails only on ENOMEM.
 */
static int load_dir(const char *dir, const sm_callbacks *callbacks)
{
	char real[PATH_MAX], *note = NULL;
	struct stat checked, opened;
	char **names = NULL;
	size_t nnames = 0;
	int dirfd = -1, rc = 0;

	/* a relative entry would load whatever is in the working directory */
	if (dir[0] != '/') {
		sm_error_set(SM_EINVALID, "ignored plug-in directory '%s' in SKILLMEAT_PLUGIN_PATH: "
			     "it is not an absolute path", dir);
		rc = remember_failure(dir, callbacks);
		goto done;
	}
	if (!realpath(dir, real)) {
		if (errno == ENOENT || errno == ENOTDIR) {
			note = sm_asprintf("no plug-in directory '%s'", dir);
			warn(callbacks, SM_LOG_DEBUG, note ? note : "no plug-in directory");
			goto done;
		}
		sm_error_set_errno(SM_EIO, errno, "cannot read plug-in directory '%s'", dir);
		rc = remember_failure(dir, callbacks);
		goto done;
	}
	if (sm_plugin_check_dir(real, geteuid()) != 0 || lstat(real, &checked) != 0) {
		rc = remember_failure(dir, callbacks);
		goto done;
	}
	dirfd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0 || fstat(dirfd, &opened) != 0) {
		sm_error_set_errno(SM_EIO, errno, "cannot open plug-in directory '%s'", dir);
		rc = remember_failure(dir, callbacks);
		goto done;
	}
	if (opened.st_dev != checked.st_dev || opened.st_ino != checked.st_ino) {
		sm_error_set(SM_ECONFLICT, "refused plug-in directory '%s': it was replaced while "
			     "being checked", dir);
		rc = remember_failure(dir, callbacks);
		goto done;
	}

	if (list_names(dirfd, &names, &nnames) != 0) {
		rc = remember_failure(dir, callbacks);
		goto done;
	}
	for (size_t i = 0; i < nnames && !rc; i++)
		rc = load_file(dirfd, dir, names[i], callbacks);
done:
	if (dirfd >= 0)
		close(dirfd);
	sm_str_array_free(names, nnames);
	free(note);
	return rc;
}

/* Returns the directories to search, in order, as new strings. */
static int search_dirs(char ***out, size_t *count, const sm_callbacks *callbacks)
{
	char **dirs = NULL, *home = NULL, *home_plugins = NULL, **grown;
	size_t n = 0;
	int rc;

	*out = NULL;
	*count = 0;
	rc = sm_plugin_path_split(getenv("SKILLMEAT_PLUGIN_PATH"), &dirs, &n);
	if (rc)
		return rc;
	if (sm_config_home(&home) != 0) {
		warn(callbacks, SM_LOG_DEBUG, sm_error_message());
		goto done;
	}
	home_plugins = sm_path_join(home, "plugins");
	grown = home_plugins ? realloc(dirs, (n + 1) * sizeof(char *)) : NULL;
	if (!grown) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	dirs = grown;
	dirs[n++] = home_plugins;
	home_plugins = NULL;
done:
	free(home);
	free(home_plugins);
	if (rc) {
		sm_str_array_free(dirs, n);
		return rc;
	}
	*out = dirs;
	*count = n;
	return 0;
}

/* ---- public API ------------------------------------------------------ */

int sm_plugins_load(const sm_callbacks *callbacks)
{
	char **dirs = NULL;
	size_t ndirs = 0;
	int rc = 0;

	if (loading)
		return 0;
	pthread_mutex_lock(&plugins_lock);
	if (plugins_scanned)
		goto done;
	loading = 1;
	rc = search_dirs(&dirs, &ndirs, callbacks);
	for (size_t i = 0; i < ndirs && !rc; i++) {
		/* the same directory listed twice is searched once */
		int seen = 0;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(dirs[i], dirs[j]) == 0;
		if (!seen)
			rc = load_dir(dirs[i], callbacks);
	}
	if (failure_warnings > MAX_FAILURE_WARNINGS) {
		char *note = sm_asprintf("%zu more plug-ins failed to load; run 'skillmeat plugin "
					 "list' to see why", failure_warnings - MAX_FAILURE_WARNINGS);

		warn(callbacks, SM_LOG_WARN, note ? note : "more plug-ins failed to load");
		free(note);
	}
	plugins_scanned = rc == 0;
	loading = 0;
done:
	pthread_mutex_unlock(&plugins_lock);
	sm_str_array_free(dirs, ndirs);
	return rc;
}

size_t sm_plugins_failed(void)
{
	size_t failed = 0;

	if (loading)
		return 0;
	pthread_mutex_lock(&plugins_lock);
	for (size_t i = 0; i < nplugins; i++)
		failed += !plugins[i]->loaded;
	pthread_mutex_unlock(&plugins_lock);
	return failed;
}

void sm_plugin_info_free(sm_plugin_info *infos, size_t count)
{
	if (!infos)
		return;
	for (size_t i = 0; i < count; i++) {
		free(infos[i].path);
		sm_str_array_free(infos[i].types, infos[i].ntypes);
		free(infos[i].error);
	}
	free(infos);
}

/* Copies one plug-in's report into `info`. */
static int copy_info(const plugin *p, sm_plugin_info *info)
{
	info->path = sm_strdup(p->path);
	info->error = p->error ? sm_strdup(p->error) : NULL;
	info->types = calloc(p->ntypes + 1, sizeof(char *));
	info->abi_version = p->abi_version;
	info->loaded = p->loaded;
	if (!info->path || (p->error && !info->error) || !info->types)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t j = 0; j < p->ntypes; j++) {
		info->types[j] = sm_strdup(p->types[j]);
		if (!info->types[j])
			return SM_ENOMEM;
		info->ntypes++;
	}
	return 0;
}

int sm_plugins_list(sm_plugin_info **out, size_t *count)
{
	sm_plugin_info *infos = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	*count = 0;
	if (loading)
		return sm_error_set(SM_EINVALID, "cannot list plug-ins while they are being loaded");
	rc = sm_plugins_load(NULL);
	if (rc)
		return rc;

	pthread_mutex_lock(&plugins_lock);
	infos = calloc(nplugins + 1, sizeof(*infos));
	if (!infos)
		rc = sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < nplugins && !rc; i++) {
		n++;
		rc = copy_info(plugins[i], &infos[i]);
	}
	pthread_mutex_unlock(&plugins_lock);
	if (rc) {
		sm_plugin_info_free(infos, n);
		return rc;
	}
	*out = infos;
	*count = n;
	return 0;
}
