#!/usr/bin/env bash
# The progress bar: drawn on a terminal (a pseudo-terminal made by script(1)),
# at most about ten times a second, always ending at 100%; absent when stderr
# is not a terminal, with --no-progress, --quiet and --json.
. "$(dirname "$0")/lib.sh"

mkdir -p skills/big
cp -r "$SRC/examples/skills/brand-guidelines/." skills/big/
head -c $((48 * 1024 * 1024)) /dev/urandom > skills/big/blob.bin
"$SM" bundle create skills/big --name big --version 1 --description d --author a \
  -o big.skillmeat-pack >/dev/null
"$SM" vault add team local "$TMP/vault" --set-default >/dev/null

# script(1) gives the command a terminal; its output contains stdout and stderr
on_tty() { script -qefc "$*" /dev/null; }

start=$(date +%s.%N)
on_tty "'$SM' vault push big.skillmeat-pack" > tty.out
end=$(date +%s.%N)
check "push on a terminal draws the bar" grep -q '\[#' tty.out
check "push on a terminal ends at 100%" grep -q '100%' tty.out
check "push bar shows bytes and speed" grep -q 'MiB/s' tty.out
redraws=$(tr -cd '\r' < tty.out | wc -c)
limit=$(python3 -c "import math; print(math.ceil(($end - $start) * 10) + 3)")
if [ "$redraws" -le "$limit" ]; then ok "redraws at most ten a second ($redraws <= $limit)"
else not_ok "redraws at most ten a second" "$redraws redraws, limit $limit"; fi

on_tty "'$SM' vault pull big-v1 --output '$TMP/out1'" > tty.out
check "pull on a terminal ends at 100%" grep -q '100%' tty.out

on_tty "'$SM' vault pull big-v1 --output '$TMP/out2' --no-progress" > tty.out
if grep -q '%' tty.out; then not_ok "--no-progress draws nothing"; else ok "--no-progress draws nothing"; fi

on_tty "'$SM' vault pull big-v1 --output '$TMP/out3' --quiet" > tty.out
if [ -s tty.out ]; then not_ok "--quiet prints nothing on success" "$(cat -v tty.out)"
else ok "--quiet prints nothing on success"; fi

sm vault pull big-v1 --output "$TMP/out4"
expect "pull without a terminal succeeds" 0
if [ -s "$ERR" ]; then not_ok "no bar when stderr is not a terminal"
else ok "no bar when stderr is not a terminal"; fi

on_tty "NO_COLOR=1 '$SM' vault pull missing-v1 --output '$TMP/out5'" > tty.out
if grep -q $'\033\\[31m' tty.out; then not_ok "NO_COLOR turns colour off"; else ok "NO_COLOR turns colour off"; fi
on_tty "'$SM' vault pull missing-v1 --output '$TMP/out5'" > tty.out
if grep -q $'\033\\[31m' tty.out; then ok "errors are coloured on a terminal"
else not_ok "errors are coloured on a terminal"; fi

finish
