"""Minimal safetensors writer/reader (format: u64 LE header length, JSON header, raw LE data)."""
import json
import os
import struct

import numpy as np

_DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "BF16": np.uint16,
       "F16": np.float16, "U8": np.uint8}


def f32_to_bf16_bits(a):
    """Round-to-nearest-even f32 -> bf16, returned as uint16 bit patterns (no NaN handling needed)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def write(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, numpy array) in file order. Streams tensor by tensor, so
    a multi-GB checkpoint never needs a second copy of its bytes in memory."""
    header, off = {}, 0
    for name, dt, arr in tensors:
        nbytes = int(np.prod(np.shape(arr), dtype=np.int64)) * np.dtype(_DT[dt]).itemsize
        header[name] = {"dtype": dt, "shape": list(np.shape(arr)), "data_offsets": [off, off + nbytes]}
        off += nbytes
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((-len(hj)) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, dt, arr in tensors:
            a = np.ascontiguousarray(arr, dtype=np.dtype(_DT[dt]).newbyteorder("<"))
            f.write(memoryview(a.reshape(-1)).cast("B"))
    os.replace(tmp, path)
    return off


def read(path):
    """Returns (dict name -> numpy array (BF16 as uint16 bits), metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(data[base + b : base + e], dtype=np.dtype(_DT[h["dtype"]]).newbyteorder("<")).reshape(h["shape"])
    return out, meta
