// Conversion of Python tensor arguments into borrowed TensorViews.
#include "tensor_convert.h"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>

#include "uccl_ep/error.h"

namespace uccl::ep::bindings {
namespace {

DType from_dlpack(const nb::dlpack::dtype& d) {
  using nb::dlpack::dtype_code;
  if (d.lanes != 1) return DType::kUnknown;
  switch (static_cast<dtype_code>(d.code)) {
    case dtype_code::Bool:
      return d.bits == 8 ? DType::kBool : DType::kUnknown;
    case dtype_code::UInt:
      return d.bits == 8 ? DType::kUInt8 : DType::kUnknown;
    case dtype_code::Int:
      switch (d.bits) {
        case 8:
          return DType::kInt8;
        case 16:
          return DType::kInt16;
        case 32:
          return DType::kInt32;
        case 64:
          return DType::kInt64;
        default:
          return DType::kUnknown;
      }
    case dtype_code::Float:
      switch (d.bits) {
        case 16:
          return DType::kFloat16;
        case 32:
          return DType::kFloat32;
        case 64:
          return DType::kFloat64;
        default:
          return DType::kUnknown;
      }
    case dtype_code::Bfloat:
      return d.bits == 16 ? DType::kBFloat16 : DType::kUnknown;
    case dtype_code::Float8_E4M3FN:
      return d.bits == 8 ? DType::kFloat8E4M3 : DType::kUnknown;
    case dtype_code::Float8_E5M2:
      return d.bits == 8 ? DType::kFloat8E5M2 : DType::kUnknown;
    default:
      return DType::kUnknown;
  }
}

DeviceKind from_dlpack_device(int device_type) {
  switch (device_type) {
    case 1:  // kDLCPU
    case 3:  // kDLCUDAHost
      return DeviceKind::kCPU;
    case 2:  // kDLCUDA
      return DeviceKind::kCUDA;
    default:
      return DeviceKind::kOther;
  }
}

TensorDesc make_desc(const std::string& dtype, const std::vector<int64_t>& shape,
                     std::optional<std::vector<int64_t>> strides, const std::string& device,
                     uintptr_t data_ptr) {
  TensorDesc d;
  TensorView& v = d.view;
  UCCL_EP_CHECK_VALUE(shape.size() <= kMaxTensorDims, "TensorDesc: at most ", kMaxTensorDims,
                      " dimensions are supported, got ", shape.size());
  v.dtype = parse_dtype(dtype);
  v.ndim = static_cast<int>(shape.size());
  int64_t running = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    v.shape[i] = shape[i];
    v.strides[i] = running;
    running *= shape[i];
  }
  if (strides) {
    UCCL_EP_CHECK_VALUE(strides->size() == shape.size(), "TensorDesc: strides has ",
                        strides->size(), " entries for ", shape.size(), " dimensions");
    for (int i = 0; i < v.ndim; ++i) v.strides[i] = (*strides)[i];
  }
  if (device == "cpu") {
    v.device = DeviceKind::kCPU;
  } else if (device.rfind("cuda:", 0) == 0) {
    v.device = DeviceKind::kCUDA;
    v.device_index = std::stoi(device.substr(5));
  } else {
    throw_error(ErrorKind::kValue,
                str_cat("TensorDesc: device '", device, "' must be 'cpu' or 'cuda:N'"));
  }
  v.data = reinterpret_cast<void*>(data_ptr);
  return d;
}

/// dtype objects of a framework (torch.bfloat16, ...) -> DType, learnt from their names the
/// first time each is seen. The objects are long-lived singletons; the cache holds a reference
/// and is never destroyed (its destructor would run after the interpreter is gone).
DType cached_dtype(nb::handle dtype) {
  static auto& cache = *new std::vector<std::pair<nb::object, DType>>();
  for (const auto& [obj, d] : cache)
    if (obj.is(dtype)) return d;
  const std::string name = nb::cast<std::string>(nb::str(dtype));
  const std::string bare = name.rfind("torch.", 0) == 0 ? name.substr(6) : name;
  DType found = DType::kUnknown;
  for (DType d : kKnownDTypes)
    if (bare == dtype_name(d)) found = d;
  if (cache.size() < 64) cache.emplace_back(nb::borrow(dtype), found);
  return found;
}

/// Whether objects of `type` expose the torch.Tensor attributes read by tensor_attributes;
/// remembered per type.
bool has_tensor_attributes(nb::handle type) {
  static auto& cache = *new std::vector<std::pair<nb::object, bool>>();  // never destroyed
  for (const auto& [t, yes] : cache)
    if (t.is(type)) return yes;
  bool yes = true;
  for (const char* attr : {"data_ptr", "stride", "shape", "dtype", "is_cuda", "get_device"})
    yes = yes && nb::hasattr(type, attr);
  if (cache.size() < 64) cache.emplace_back(nb::borrow(type), yes);
  return yes;
}

/// Attribute names as interned Python strings, made once (and never freed: they outlive the
/// interpreter's teardown of this module).
struct AttrNames {
  PyObject* shape = PyUnicode_InternFromString("shape");
  PyObject* stride = PyUnicode_InternFromString("stride");
  PyObject* data_ptr = PyUnicode_InternFromString("data_ptr");
  PyObject* dtype = PyUnicode_InternFromString("dtype");
  PyObject* is_cuda = PyUnicode_InternFromString("is_cuda");
  PyObject* get_device = PyUnicode_InternFromString("get_device");
};

const AttrNames& attr_names() {
  static const AttrNames* names = new AttrNames();
  return *names;
}

/// An integer from a Python int; raises nb::cast_error otherwise.
int64_t int_of(PyObject* o) {
  if (o == nullptr || !PyLong_Check(o)) throw nb::cast_error();
  const int64_t v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) throw nb::python_error();
  return v;
}

/// A new reference, or nb::python_error.
nb::object checked(PyObject* o) {
  if (o == nullptr) throw nb::python_error();
  return nb::steal(o);
}

/// obj.name(): a new reference, or null with the error set. Only the stable ABI of Python 3.12,
/// which the module targets there (PyObject_CallMethodNoArgs joins it in 3.13).
PyObject* call_method(PyObject* obj, PyObject* name) {
  PyObject* self = obj;  // the call may borrow args[0]'s slot, which the flag below permits
  return PyObject_VectorcallMethod(name, &self, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

/// Reads a torch.Tensor-like object through its Python attributes (data_ptr(), shape, stride(),
/// dtype, is_cuda, get_device()): no DLPack capsule, no PyTorch linked, a few Python C-API
/// calls per tensor.
TensorView tensor_attributes(nb::handle obj, const char* name) {
  const AttrNames& n = attr_names();
  TensorView v;
  try {
    const nb::object shape = checked(PyObject_GetAttr(obj.ptr(), n.shape));
    if (!PyTuple_Check(shape.ptr())) throw nb::cast_error();
    v.ndim = static_cast<int>(PyTuple_Size(shape.ptr()));
    UCCL_EP_CHECK_VALUE(v.ndim <= kMaxTensorDims, name, " has ", v.ndim, " dimensions; at most ",
                        kMaxTensorDims, " are supported");
    const nb::object strides = checked(call_method(obj.ptr(), n.stride));
    if (!PyTuple_Check(strides.ptr()) || PyTuple_Size(strides.ptr()) != v.ndim)
      throw nb::cast_error();
    for (int i = 0; i < v.ndim; ++i) {
      v.shape[i] = int_of(PyTuple_GetItem(shape.ptr(), i));
      v.strides[i] = int_of(PyTuple_GetItem(strides.ptr(), i));
    }
    v.data = reinterpret_cast<void*>(int_of(checked(call_method(obj.ptr(), n.data_ptr)).ptr()));
    const nb::object dtype = checked(PyObject_GetAttr(obj.ptr(), n.dtype));
    v.dtype = cached_dtype(dtype);
    if (v.dtype == DType::kUnknown)
      throw_error(ErrorKind::kType,
                  str_cat(name, " has dtype ", nb::cast<std::string>(nb::str(dtype)),
                          ", which uccl-ep does not handle"));
    const nb::object is_cuda = checked(PyObject_GetAttr(obj.ptr(), n.is_cuda));
    if (is_cuda.ptr() == Py_True) {
      v.device = DeviceKind::kCUDA;
      v.device_index =
          static_cast<int>(int_of(checked(call_method(obj.ptr(), n.get_device)).ptr()));
    } else {
      v.device = nb::cast<std::string>(obj.attr("device").attr("type")) == "cpu"
                     ? DeviceKind::kCPU
                     : DeviceKind::kOther;
    }
  } catch (const nb::python_error& e) {
    const std::string why = nb::cast<std::string>(nb::str(e.value()));
    throw_error(ErrorKind::kType, str_cat(name, ": cannot read the tensor (",
                                          nb::type_name(e.type()).c_str(), ": ", why, ")"));
  } catch (const nb::cast_error&) {
    throw_error(ErrorKind::kType, str_cat(name,
                                          ": its shape, strides, address or device are "
                                          "not integers as in torch.Tensor"));
  }
  return v;
}

}  // namespace

DType parse_dtype(const std::string& raw) {
  const std::string name = raw.rfind("torch.", 0) == 0 ? raw.substr(6) : raw;
  for (DType d : kKnownDTypes)
    if (name == dtype_name(d)) return d;
  throw_error(ErrorKind::kValue, str_cat("unknown dtype '", raw, "'"));
}

TensorView Imports::view(nb::handle obj, const char* name) {
  if (obj.is_none()) return TensorView{};
  if (nb::isinstance<TensorDesc>(obj)) return nb::cast<const TensorDesc&>(obj).view;
  if (has_tensor_attributes(obj.type())) return tensor_attributes(obj, name);
  nb::ndarray<> array;
  if (!nb::try_cast(obj, array, false))
    throw_error(ErrorKind::kType, str_cat(name, " must be a tensor (DLPack) or None, got ",
                                          nb::type_name(obj.type()).c_str()));
  TensorView v;
  v.data = array.data();
  v.ndim = static_cast<int>(array.ndim());
  UCCL_EP_CHECK_VALUE(v.ndim <= kMaxTensorDims, name, " has ", v.ndim, " dimensions; at most ",
                      kMaxTensorDims, " are supported");
  for (int i = 0; i < v.ndim; ++i) {
    v.shape[i] = static_cast<int64_t>(array.shape(i));
    v.strides[i] = array.stride(i);
  }
  v.dtype = from_dlpack(array.dtype());
  if (v.dtype == DType::kUnknown)
    throw_error(ErrorKind::kType,
                str_cat(name, " has a dtype uccl-ep does not handle (DLPack code ",
                        static_cast<int>(array.dtype().code), ", ",
                        static_cast<int>(array.dtype().bits), " bits)"));
  v.device = from_dlpack_device(array.device_type());
  v.device_index = array.device_id();
  arrays_.push_back(std::move(array));
  return v;
}

void bind_tensor_desc(nb::module_& m) {
  nb::class_<TensorDesc>(m, "TensorDesc",
                         "A framework-free tensor description: dtype name, shape, strides in "
                         "elements (default: contiguous), device ('cpu' or 'cuda:N') and address.")
      .def(nb::new_(&make_desc), nb::arg("dtype"), nb::arg("shape"),
           nb::arg("strides") = nb::none(), nb::arg("device") = "cuda:0", nb::arg("data_ptr") = 0)
      .def_prop_ro("dtype",
                   [](const TensorDesc& d) { return std::string(dtype_name(d.view.dtype)); })
      .def_prop_ro("shape", [](const TensorDesc& d) {
        return std::vector<int64_t>(d.view.shape, d.view.shape + d.view.ndim);
      });
}

}  // namespace uccl::ep::bindings
