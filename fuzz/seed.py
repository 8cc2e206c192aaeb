#!/usr/bin/env python3
"""Seed the fuzz corpora from real captures: whole files for pcap_file, frames (with a
link-type selector byte) for decode and defrag, DNS payloads on port 53 for dns_parse and
dns_tcp. Plain Python, no dependencies; pcap only (pcapng files are seeds for pcap_file)."""
import os, struct, sys, hashlib

LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276]

def records(data):
    if len(data) < 24:
        return None, []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return None, []
    lt = struct.unpack(e + "I", data[20:24])[0]
    out, off = [], 24
    while off + 16 <= len(data):
        caplen = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        off += 16
        out.append(data[off:off + caplen])
        off += caplen
    return lt, out

def dns_payload(lt, f):
    if lt != 1 or len(f) < 14:
        return None
    ty = struct.unpack(">H", f[12:14])[0]
    p = f[14:]
    while ty in (0x8100, 0x88a8) and len(p) >= 4:
        ty, p = struct.unpack(">H", p[2:4])[0], p[4:]
    if ty != 0x0800 or len(p) < 20:
        return None
    ihl = (p[0] & 15) * 4
    if p[9] not in (6, 17) or len(p) < ihl + 8:
        return None
    sport, dport = struct.unpack(">HH", p[ihl:ihl + 4])
    if 53 not in (sport, dport):
        return None
    if p[9] == 17:
        return p[ihl + 8:]
    doff = (p[ihl + 12] >> 4) * 4
    return p[ihl + doff:]

def put(d, blob):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(blob).hexdigest()), "wb") as fh:
        fh.write(blob)

def main(root, dirs):
    n = 0
    for src in dirs:
        if not os.path.isdir(src):
            continue
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            if not name.endswith((".pcap", ".pcapng", ".trace")):
                continue
            data = open(path, "rb").read()
            if len(data) < 512 * 1024:
                put(os.path.join(root, "pcap_file"), data)
            lt, frames = records(data)
            if lt is None:
                continue
            sel = bytes([LINKTYPES.index(lt)]) if lt in LINKTYPES else b"\x01"
            for f in frames[:200]:
                put(os.path.join(root, "decode"), sel + f)
                put(os.path.join(root, "defrag"), f[14:] if lt == 1 else f)
                p = dns_payload(lt, f)
                if p:
                    put(os.path.join(root, "dns_parse"), p)
                    put(os.path.join(root, "dns_tcp"), p)
                    n += 1
    # NSM logs: the first byte picks the reader (0 Zeek TSV dns, 1 TSV conn, 2 JSON dns,
    # 3 JSON conn, 4 eve), then a handful of real lines.
    nsm = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "nsm")
    for sub, _, names in os.walk(nsm):
        for name in sorted(names):
            if name.endswith(".gz") or name.endswith(".tsv"):
                continue
            lines = [l for l in open(os.path.join(sub, name), "rb").read().split(b"\n") if l and not l.startswith(b"#")]
            if "eve" in name or "suricata" in sub:
                pick = 4
            elif name.endswith(".json") or b"{" in (lines[0][:1] if lines else b""):
                pick = 3 if "conn" in name else 2
            else:
                pick = 1 if "conn" in name else 0
            for k in range(0, min(len(lines), 60), 6):
                put(os.path.join(root, "nsm_line"), bytes([pick]) + b"\n".join(lines[k:k + 6]))
    for expr in ["o1*o2+o3", "o1*(o2+o3)", "((o1^o2)<<3)%65536", "o4/(o3-o3)", "-(~o1)|o2&o3>>1"]:
        put(os.path.join(root, "formula"), expr.encode())
    print(f"seeded corpora under {root} ({n} DNS payloads)")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
