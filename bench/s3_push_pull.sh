#!/usr/bin/env bash
# Push and pull of large bundles through the S3 emulator with skillmeat,
# aws-cli (`aws s3 cp`) and rclone (`rclone copyto`), all against the same
# server in the same run. Each round moves every file once up and once
# down with each tool. The script reports the median wall times, the ratio
# of skillmeat to the faster of the two others, and skillmeat's peak RSS.
#
# SIZES_MIB  sizes of the random data in the bundles (default "256 1024")
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/bench/s3_common.sh"

SIZES_MIB=${SIZES_MIB:-256 1024}
command -v rclone >/dev/null || { echo "error: rclone is missing" >&2; exit 1; }
echo "skillmeat $("$SM" --version), $("$AWS" --version 2>&1 | cut -d' ' -f1), $(rclone version | head -1)"
s3_vault s3bench "bench/"

for mib in $SIZES_MIB; do
  id="bench-s3-$mib-v1"
  bundle="$BENCH_DIR/bench-s3-$mib.skillmeat-pack"
  if [ ! -s "$bundle" ]; then
    rm -rf "$BENCH_DIR/skill-s3-$mib"
    cp -r "$SKILL" "$BENCH_DIR/skill-s3-$mib"
    head -c "$((mib * 1024 * 1024))" /dev/urandom >"$BENCH_DIR/skill-s3-$mib/random.bin"
    "$SM" bundle create "$BENCH_DIR/skill-s3-$mib" --name "bench-s3-$mib" --version 1 \
      --description "S3 benchmark bundle" --author bench -o "$bundle" >/dev/null
    rm -rf "$BENCH_DIR/skill-s3-$mib"
  fi
  size=$(stat -c %s "$bundle")
  echo "== $mib MiB: $bundle ($size bytes), $ROUNDS rounds"
  out="$TMP/out-$mib"
  times="$TMP/times-$mib"
  mkdir -p "$times"

  for round in $(seq 1 "$ROUNDS"); do
    # skillmeat: delete the stored copy first, so every push uploads
    "$SM" vault delete "$id" --vault s3bench >/dev/null 2>&1 || true
    timed "$times/sm-push" "$SM" vault push "$bundle" --vault s3bench --no-progress
    rm -rf "$out" && mkdir -p "$out"
    timed "$times/sm-pull" "$SM" vault pull "$id" --vault s3bench --output "$out" --no-progress
    if ! cmp -s "$bundle" "$out/$id.skillmeat-pack"; then
      echo "error: skillmeat pulled other bytes than it pushed" >&2
      exit 1
    fi
    rm -rf "$out" && mkdir -p "$out"

    awsc s3 rm --only-show-errors "s3://vault/aws/$id" >/dev/null 2>&1 || true
    timed "$times/aws-push" "$AWS" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors \
      "$bundle" "s3://vault/aws/$id"
    timed "$times/aws-pull" "$AWS" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors \
      "s3://vault/aws/$id" "$out/aws"
    cmp -s "$bundle" "$out/aws" || { echo "error: aws pulled other bytes" >&2; exit 1; }
    rm -rf "$out" && mkdir -p "$out"

    rclone deletefile "s3t:vault/rclone/$id" >/dev/null 2>&1 || true
    timed "$times/rclone-push" rclone copyto "$bundle" "s3t:vault/rclone/$id"
    timed "$times/rclone-pull" rclone copyto "s3t:vault/rclone/$id" "$out/rclone"
    cmp -s "$bundle" "$out/rclone" || { echo "error: rclone pulled other bytes" >&2; exit 1; }
    rm -rf "$out"
    echo "round $round: push sm/aws/rclone $(tail -qn1 "$times/sm-push" "$times/aws-push" "$times/rclone-push" | cut -d' ' -f1 | tr '\n' ' ')s," \
      "pull $(tail -qn1 "$times/sm-pull" "$times/aws-pull" "$times/rclone-pull" | cut -d' ' -f1 | tr '\n' ' ')s"
  done

  for op in push pull; do
    sm=$(column "$times/sm-$op" 1)
    aws=$(column "$times/aws-$op" 1)
    rc=$(column "$times/rclone-$op" 1)
    rss=$(awk '{ print $2 }' "$times/sm-$op" | sort -g | tail -1)
    result "s3_push_pull: $op $mib MiB median skillmeat ${sm} s, aws ${aws} s, rclone ${rc} s;" \
      "skillmeat / faster peer $(awk -v s="$sm" -v a="$aws" -v r="$rc" 'BEGIN { f = a < r ? a : r; printf "%.2f", s / f }');" \
      "skillmeat peak RSS $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') MiB (max of $ROUNDS rounds)"
  done
  "$SM" vault delete "$id" --vault s3bench >/dev/null 2>&1 || true
  awsc s3 rm --only-show-errors "s3://vault/aws/$id" >/dev/null 2>&1 || true
  rclone deletefile "s3t:vault/rclone/$id" >/dev/null 2>&1 || true
done
