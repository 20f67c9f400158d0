# SPDX-License-Identifier: MIT
# Python's ctypes loads libiopool (dlopen underneath) and runs a pool:
# create, allocate, write, free, audit, destroy. Usage: test_ctypes.py LIB
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.iop_pool_create.restype = ctypes.c_void_p
lib.iop_pool_create.argtypes = [ctypes.c_void_p]
lib.iop_alloc.restype = ctypes.c_void_p
lib.iop_alloc.argtypes = [ctypes.c_void_p]
lib.iop_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
lib.iop_pool_audit.argtypes = [ctypes.c_void_p]
lib.iop_pool_destroy.argtypes = [ctypes.c_void_p]

# struct iop_pool_params begins struct_size (u32), flags (u32), name, obj_size;
# the rest stays zero. Its size (argv[2]) comes from the C compiler.
params = (ctypes.c_ubyte * 512)()
class Head(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("name", ctypes.c_char_p), ("obj_size", ctypes.c_size_t)]
name = ctypes.c_char_p(b"ctypes")
head = Head.from_buffer(params)
head.obj_size = 128
head.name = name
size = int(sys.argv[2])
head.struct_size = size
pool = lib.iop_pool_create(ctypes.addressof(params))
if not pool:
    sys.exit("FAIL: iop_pool_create returned NULL (errno %d)" % ctypes.get_errno())
objs = []
for i in range(2000):
    p = lib.iop_alloc(pool)
    if not p:
        sys.exit("FAIL: iop_alloc")
    ctypes.memset(p, i & 0xff, 128)
    objs.append(p)
for p in objs:
    lib.iop_free(pool, p)
if lib.iop_pool_audit(pool) != 0 or lib.iop_pool_destroy(pool) != 0:
    sys.exit("FAIL: audit or destroy")
print("ctypes: 2000 pairs through ctypes: ok")
