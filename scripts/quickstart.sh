#!/usr/bin/env bash
# Installs what is needed, builds skillmeat, and runs the main job on a
# fresh local vault: create a bundle from examples/skills, push it, list
# the vault, pull it into a new directory and verify it.
# Nothing outside a temporary directory is touched (SKILLMEAT_HOME too).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SKILLMEAT_HOME="$work/home"
sm=build/skillmeat
bundle="$work/example-skills.skillmeat-pack"

step() { printf '\n$ %s\n' "$*"; "$@"; }

step $sm bundle create examples/skills/brand-guidelines examples/skills/frontend-design \
  examples/skills/internal-comms --name example-skills --version 1.0.0 \
  --description "Three example skills" --author "skillmeat examples" \
  --tag example --tag design --license Apache-2.0 -o "$bundle"
step $sm bundle inspect "$bundle"
step $sm vault add team local "$work/vault" --set-default
step $sm vault list
step $sm vault push "$bundle"
step $sm vault ls
step $sm vault pull example-skills-v1.0.0 --output "$work/pulled"
step $sm bundle verify "$work/pulled/example-skills-v1.0.0.skillmeat-pack"
cmp "$bundle" "$work/pulled/example-skills-v1.0.0.skillmeat-pack"
printf '\nquickstart: the pulled bundle is byte-identical to the pushed one and verified\n'
