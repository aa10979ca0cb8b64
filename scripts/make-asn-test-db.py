#!/usr/bin/env python3
"""Writes the test ASN databases of testdata/ (MMDB, GeoLite2-ASN layout) with the `mmdb-writer`
package from PyPI (`pip install mmdb-writer netaddr`). The files are committed; run this only to
change them. Networks are documentation ranges; AS numbers are private-use (64496-64511).

  asn-test.mmdb         198.51.100.0/24 -> AS64500 "Example Transit"
                        203.0.113.0/24  -> AS64501 "Example Content"
                        2001:db8:1::/48 -> AS64502 "Example Six"
                        (192.0.2.0/24 and everything else: no entry)
  asn-test-v2.mmdb      the same with 198.51.100.0/24 -> AS64510 "Renumbered Transit"
  asn-test-string.mmdb  asn-test.mmdb with the numbers stored as strings ("AS64500")

Usage: scripts/make-asn-test-db.py [OUTDIR]   (default testdata)
"""

import os
import sys

from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

OUT = sys.argv[1] if len(sys.argv) > 1 else "testdata"

BASE = [
    ("198.51.100.0/24", 64500, "Example Transit"),
    ("203.0.113.0/24", 64501, "Example Content"),
    ("2001:db8:1::/48", 64502, "Example Six"),
]


def write(name, rows, as_string=False):
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                   description="goflow2-exporter test ASN database")
    for net, asn, org in rows:
        number = "AS%d" % asn if as_string else MmdbU32(asn)
        w.insert_network(IPSet([net]), {"autonomous_system_number": number,
                                        "autonomous_system_organization": org})
    path = os.path.join(OUT, name)
    w.to_db_file(path)
    print(path)


write("asn-test.mmdb", BASE)
write("asn-test-v2.mmdb", [(n, 64510, "Renumbered Transit") if a == 64500 else (n, a, o)
                           for n, a, o in BASE])
write("asn-test-string.mmdb", BASE, as_string=True)
