# Chooses CMAKE_CUDA_ARCHITECTURES before the CUDA language is enabled.
# Priority: -DUCCL_EP_CUDA_ARCHS=... (CMake syntax, e.g. "90a;100a"), then the
# TORCH_CUDA_ARCH_LIST environment variable (PyTorch syntax, e.g. "9.0a;10.0+PTX"),
# then the default "90a". Nothing here looks at a GPU.

set(UCCL_EP_CUDA_ARCHS "" CACHE STRING
    "CUDA architectures in CMake syntax (default: TORCH_CUDA_ARCH_LIST, else 90a)")

function(uccl_ep_torch_arch_list_to_cmake torch_list out_var)
  string(REPLACE " " ";" items "${torch_list}")
  set(result "")
  foreach(item IN LISTS items)
    if(item STREQUAL "")
      continue()
    endif()
    set(ptx OFF)
    if(item MATCHES "\\+PTX$")
      set(ptx ON)
      string(REGEX REPLACE "\\+PTX$" "" item "${item}")
    endif()
    if(NOT item MATCHES "^([0-9]+)\\.([0-9]+)([af]?)$")
      message(FATAL_ERROR "TORCH_CUDA_ARCH_LIST entry '${item}' is not of the form X.Y[a|f][+PTX]")
    endif()
    set(arch "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
    if(ptx)
      list(APPEND result "${arch}")
    else()
      list(APPEND result "${arch}-real")
    endif()
  endforeach()
  set(${out_var} "${result}" PARENT_SCOPE)
endfunction()

if(UCCL_EP_CUDA_ARCHS)
  set(_uccl_archs "${UCCL_EP_CUDA_ARCHS}")
  set(_uccl_archs_from "UCCL_EP_CUDA_ARCHS")
elseif(DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
  uccl_ep_torch_arch_list_to_cmake("$ENV{TORCH_CUDA_ARCH_LIST}" _uccl_archs)
  set(_uccl_archs_from "TORCH_CUDA_ARCH_LIST")
else()
  set(_uccl_archs "90a")
  set(_uccl_archs_from "default")
endif()
set(CMAKE_CUDA_ARCHITECTURES "${_uccl_archs}" CACHE STRING "CUDA architectures" FORCE)
message(STATUS "uccl-ep: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES} (from ${_uccl_archs_from})")

# SM90 features (FP8 paths) are compiled when every architecture is >= 90.
set(UCCL_EP_SM90 ON)
foreach(arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
  string(REGEX MATCH "^[0-9]+" num "${arch}")
  if(num LESS 90)
    set(UCCL_EP_SM90 OFF)
  endif()
endforeach()
