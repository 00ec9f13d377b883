#!/usr/bin/env python3
"""Writes hostile variants of a bundle for the pull tests.

hostile_zip.py variants SRC OUTDIR: one archive per attack (local headers
that differ from the central directory, hidden local entries, split
folders, data descriptors, zip64 fields, deflate streams that end early or
late, shared offsets), named ATTACK.skillmeat-pack.
hostile_zip.py damaged N OUT: N local headers, each in a folder of its
own, declaring 1 byte and storing none, then an empty central directory.
"""
import hashlib, struct, sys, zlib, zipfile, os


def damaged(n, out):
    buf = bytearray()
    for i in range(n):
        name = b'artifacts/t/%08d/f' % i
        buf += struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, 0, 0, 0x21, 0, 0, 1, len(name), 0) + name
    buf += struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, 0, 0, 0, len(buf), 0)
    open(out, 'wb').write(buf)


if sys.argv[1] == 'damaged':
    damaged(int(sys.argv[2]), sys.argv[3])
    sys.exit(0)
src, outdir = sys.argv[2], sys.argv[3]
z = zipfile.ZipFile(src)
orig = [(i.filename, z.read(i.filename)) for i in z.infolist()]

def deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()

def build(ents):
    """Writes local entries and a central directory. Each entry is a dict with
    name and data; optional keys change one field: lname/cname (local or
    central name), method/lmethod, lflags/cflags, raw (compressed bytes),
    lcomp/ccomp, lsize/csize, extra/cextra, desc (data descriptor),
    in_cd (False hides it), cd_offset_from (index of another entry)."""
    out = bytearray(); cd = bytearray(); n = 0
    offs = []
    for e in ents:
        m = e.get('method', 8)
        if 'raw' in e:
            raw = e['raw']
        elif m == 8:
            raw = deflate(e['data'])
        else:
            raw = e['data']
        crc = zlib.crc32(e['data'])
        size = len(e['data'])
        lname = e.get('lname', e['name']).encode()
        cname = e.get('cname', e['name']).encode()
        extra = e.get('extra', b'')
        lflags = e.get('lflags', 0); cflags = e.get('cflags', lflags)
        lcomp = e.get('lcomp', len(raw)); ccomp = e.get('ccomp', len(raw))
        lsize = e.get('lsize', size); csize = e.get('csize', size)
        off = len(out)
        offs.append(off)
        out += struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, lflags, e.get('lmethod', m), 0, 0x21,
                           crc if not (lflags & 8) else 0, lcomp, lsize, len(lname), len(extra))
        out += lname + extra + raw
        if e.get('desc'):
            out += struct.pack('<IIII', 0x08074b50, crc, len(raw), size)
        e['_off'] = off; e['_rec'] = (cname, m, cflags, crc, ccomp, csize)
    for e in ents:
        if not e.get('in_cd', True):
            continue
        cname, m, cflags, crc, ccomp, csize = e['_rec']
        off = e['_off'] if 'cd_offset_from' not in e else ents[e['cd_offset_from']]['_off']
        off = e.get('cd_offset', off)
        cextra = e.get('cextra', b'')
        cd += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, (3 << 8) | 20, 20, cflags, m, 0, 0x21,
                          crc, ccomp, csize, len(cname), len(cextra), 0, 0, 0, (0o100644 << 16), off)
        cd += cname + cextra
        n += 1
    cdo = len(out)
    out += cd
    out += struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, n, n, len(cd), cdo, 0)
    return bytes(out)

def base():
    return [dict(name=n, data=d) for n, d in orig]

V = {}
V['plain'] = build(base())
# local name differs from the CD name
b = base(); b[0]['lname'] = b[0]['name'][:-1] + 'X'; V['lname-differs'] = build(b)
# the local headers of the first two files carry each other's names
b = base(); b[0]['lname'], b[1]['lname'] = b[1]['name'], b[0]['name']; V['lname-swapped'] = build(b)
# hidden local entry inside the artifact, not in the CD
b = base(); b.insert(1, dict(name=b[0]['name'].rsplit('/', 1)[0] + '/evil.sh', data=b'echo evil\n', in_cd=False)); V['hidden-in-artifact'] = build(b)
# hidden entry outside artifacts between two entries of an artifact
b = base(); b.insert(1, dict(name='zzz-hidden', data=b'x' * 100, in_cd=False)); V['hidden-outside'] = build(b)
# hidden entry that carries a copy of the *first* file with altered data, CD points at the real one
b = base(); evil = dict(name=b[0]['name'], data=b'tampered\n' + b[0]['data'][9:], in_cd=False); b.insert(0, evil); V['hidden-dup-name'] = build(b)
# same, but CD points at the hidden tampered copy and the real one is hidden
b = base(); evil = dict(name=b[0]['name'], data=b'tampered\n' + b[0]['data'][9:]); b[0]['in_cd'] = False; b.insert(1, evil); V['cd-points-tampered'] = build(b)
# artifact split by another artifact's entry
b = base(); b[1], b[2] = b[2], b[1]; V['split-artifact'] = build(b)
# data descriptor
b = base(); b[1]['lflags'] = 8; b[1]['desc'] = True; V['descriptor'] = build(b)
# data descriptor only in the local header
b = base(); b[1]['lflags'] = 8; b[1]['cflags'] = 0; b[1]['desc'] = True; V['descriptor-local-only'] = build(b)
# deflate stream ends early (trailing garbage inside compressed size)
b = base(); b[1]['raw'] = deflate(b[1]['data']) + b'GARBAGE'; V['deflate-early'] = build(b)
# deflate stream ends late (compressed size cuts the stream)
b = base(); r = deflate(b[1]['data']); b[1]['raw'] = r[:-3]; V['deflate-late'] = build(b)
# local compressed size differs from the CD
b = base(); r = deflate(b[1]['data']); b[1]['raw'] = r + b'\0' * 8; b[1]['lcomp'] = len(r); b[1]['ccomp'] = len(r) + 8; V['lcomp-smaller'] = build(b)
b = base(); r = deflate(b[1]['data']); b[1]['raw'] = r + b'\0' * 8; b[1]['ccomp'] = len(r); b[1]['lcomp'] = len(r) + 8; V['lcomp-bigger'] = build(b)
# local sizes differ
b = base(); b[1]['lsize'] = len(b[1]['data']) - 1; V['lsize-differs'] = build(b)
# method differs (local stored, CD deflate)
b = base(); b[1]['lmethod'] = 0; V['lmethod-differs'] = build(b)
# duplicated offsets: two CD entries with the same local header
b = base(); b[1]['cd_offset_from'] = 0; V['dup-offset'] = build(b)
# zip64 sizes 0xffffffff in local header, real sizes via CD
b = base(); r = deflate(b[1]['data']); b[1]['lcomp'] = 0xffffffff; b[1]['lsize'] = 0xffffffff
b[1]['extra'] = struct.pack('<HHQQ', 1, 16, len(b[1]['data']), len(r)); V['zip64-local'] = build(b)
# zip64 extra in the CD only with real values in the local header
b = base(); r = deflate(b[1]['data']); b[1]['ccomp'] = 0xffffffff; b[1]['csize'] = 0xffffffff
b[1]['cextra'] = struct.pack('<HHQQ', 1, 16, len(b[1]['data']), len(r)); V['zip64-cd'] = build(b)
# encrypted flag in local only
b = base(); b[1]['lflags'] = 1; b[1]['cflags'] = 0; V['encrypted-local'] = build(b)
# tampered data of one file (hash mismatch)
b = base(); b[1]['data'] = b'x' + b[1]['data'][1:]; V['tampered-data'] = build(b)
# one file stored without compression
b = base(); b[1]['method'] = 0; V['stored'] = build(b)
# extra junk before first local header (prefix)
V['prefixed'] = b'JUNK' * 8 + V['plain']
# extra local extra field bytes that look like a local header
b = base(); b[1]['extra'] = struct.pack('<HH', 0xcafe, 4) + b'PK\3\4'; V['extra-field'] = build(b)
# entry of artifact moved after manifest.json
b = base(); m = b.pop(); b.insert(2, m); V['manifest-middle'] = build(b)
# hidden entry in artifact *after* the last artifact entry (before CD) not in the CD
b = base(); b.insert(len(b) - 1, dict(name=b[1]['name'] + '.hidden', data=b'h', in_cd=False)); V['hidden-tail'] = build(b)
# truncated file (missing last 10 bytes)
V['truncated'] = V['plain'][:-10]
for k, v in V.items():
    open(os.path.join(outdir, k + '.skillmeat-pack'), 'wb').write(v)
print(' '.join(V))
