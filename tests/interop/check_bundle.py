#!/usr/bin/env python3
"""Check a .skillmeat-pack the way the original Python tool computes its hashes.

Usage: check_bundle.py BUNDLE

Opens the archive with zipfile, loads manifest.json, recomputes every
artifact hash and the bundle hash, and prints "ok" (exit 0) when all of
them match the manifest. Otherwise prints one line per mismatch and exits
with 1; an unreadable bundle exits with 2. Standard library only.

The rules:
  artifact hash = sha256 over, for each file in sorted order, the UTF-8
      relative path followed directly by the file's bytes
  manifest hash = sha256 of json.dumps(manifest without "bundle_hash",
      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
  bundle hash = sha256 of "sha256:<manifest hash>" followed by the sorted
      artifact hash strings from the manifest
Every hash is written as "sha256:" and 64 lower-case hex digits.
"""

import hashlib
import json
import sys
import zipfile

CHUNK = 1024 * 1024


def artifact_hash(archive, artifact):
    """Return the hash of one artifact's files as stored in the archive."""
    digest = hashlib.sha256()
    for rel in sorted(artifact["files"]):
        digest.update(rel.encode("utf-8"))
        with archive.open(artifact["path"] + rel) as member:
            while True:
                chunk = member.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def bundle_hash(manifest):
    """Return the bundle hash of a parsed manifest."""
    without_hash = dict(manifest)
    without_hash.pop("bundle_hash", None)
    text = json.dumps(without_hash, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    manifest_hash = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    digest = hashlib.sha256(manifest_hash.encode("utf-8"))
    for value in sorted(a["hash"] for a in manifest["artifacts"]):
        digest.update(value.encode("utf-8"))
    return "sha256:" + digest.hexdigest()


def check(path):
    """Return the list of mismatches found in the bundle at `path`."""
    problems = []
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json").decode("utf-8"))
        for artifact in manifest["artifacts"]:
            try:
                actual = artifact_hash(archive, artifact)
            except KeyError as error:
                problems.append("artifact '%s': %s" % (artifact["name"], error))
                continue
            if actual != artifact["hash"]:
                problems.append("artifact '%s' hash mismatch: manifest %s, archive %s"
                                % (artifact["name"], artifact["hash"], actual))
        computed = bundle_hash(manifest)
        if computed != manifest.get("bundle_hash"):
            problems.append("bundle hash mismatch: manifest %s, computed %s"
                            % (manifest.get("bundle_hash"), computed))
    return problems


def main(argv):
    if len(argv) != 2:
        print("usage: check_bundle.py BUNDLE", file=sys.stderr)
        return 2
    try:
        problems = check(argv[1])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
        print("cannot check '%s': %s" % (argv[1], error), file=sys.stderr)
        return 2
    if problems:
        for line in problems:
            print(line)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
