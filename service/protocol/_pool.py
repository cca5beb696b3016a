"""The descriptor pool of calsurr's protocol stubs (written by scripts/generate_protos.py).

Not protobuf's default pool, where tritonclient registers the same protocol names.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
