"""Times the reference Python partition function (the design document's, with
N as a parameter) over random UUIDs: keys per second on one core."""
import hashlib
import sys
import time
import uuid


def get_partition_key(consultation_id: str, site_id: str = None, partitions: int = 3) -> str:
    if site_id:
        return f"site_{site_id}"
    hash_value = int(hashlib.md5(consultation_id.encode()).hexdigest(), 16)
    return f"partition_{hash_value % partitions}"


count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
partitions = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ids = [str(uuid.uuid4()) for _ in range(count)]
best = 0.0
for _ in range(3):
    start = time.perf_counter()
    for i in ids:
        get_partition_key(i, None, partitions)
    best = max(best, count / (time.perf_counter() - start))
print(f"RESULT bench=partition impl=python{sys.version_info.major}.{sys.version_info.minor} partitions={partitions} ids={count} keys_per_s={int(best)}")
