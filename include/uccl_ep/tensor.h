// A framework-free description of a tensor argument: pointer, dtype, shape, strides, device.
#pragma once

#include <cstdint>
#include <string>

namespace uccl::ep {

/// Element types uccl-ep understands. `kFloat8E4M3` is OCP float8_e4m3fn.
enum class DType : uint8_t {
  kUnknown,
  kBool,
  kUInt8,
  kInt32,
  kInt64,
  kFloat32,
  kBFloat16,
  kFloat8E4M3,
  kFloat16,
  kFloat64,
  kInt8,
  kInt16,
  kFloat8E5M2,
};

/// Every DType but kUnknown.
inline constexpr DType kKnownDTypes[] = {DType::kBool,       DType::kUInt8,   DType::kInt32,
                                         DType::kInt64,      DType::kFloat32, DType::kBFloat16,
                                         DType::kFloat8E4M3, DType::kFloat16, DType::kFloat64,
                                         DType::kInt8,       DType::kInt16,   DType::kFloat8E5M2};

enum class DeviceKind : uint8_t { kCPU, kCUDA, kOther };

/// Size in bytes of one element (0 for kUnknown).
int dtype_size(DType dtype);
/// Lower-case name as PyTorch prints it ("bfloat16", "float8_e4m3fn", ...).
const char* dtype_name(DType dtype);

constexpr int kMaxTensorDims = 4;

/// A borrowed view of a tensor. `data == nullptr && ndim == -1` means "not given" (None).
/// Strides are in elements, as in PyTorch and DLPack.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kUnknown;
  int ndim = -1;
  int64_t shape[kMaxTensorDims] = {};
  int64_t strides[kMaxTensorDims] = {};
  DeviceKind device = DeviceKind::kCPU;
  int device_index = 0;

  bool defined() const { return ndim >= 0; }
  int64_t size(int dim) const { return shape[dim]; }
  int64_t stride(int dim) const { return strides[dim]; }
  int64_t numel() const;
  int64_t nbytes() const { return numel() * dtype_size(dtype); }
  bool is_contiguous() const;
  /// "[4096, 7168]" style string for messages.
  std::string shape_str() const;
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

}  // namespace uccl::ep
