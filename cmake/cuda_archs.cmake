# Chooses the CUDA architectures. Included before project(), so that a choice is in place when
# the CUDA language is enabled; uccl_ep_finish_cuda_archs() completes the default after
# project(), once the toolkit's version is known. Nothing here looks at a GPU.
#
# Priority: -DUCCL_EP_CUDA_ARCHS=... (CMake syntax, e.g. "90a;100a"), then
# -DCMAKE_CUDA_ARCHITECTURES=..., then the TORCH_CUDA_ARCH_LIST environment variable (PyTorch
# syntax, e.g. "9.0a;10.0+PTX"), then the default: 90a (H100, H200), and 100a (B200, GB200)
# where the toolkit has it (CUDA >= 12.8).

set(UCCL_EP_CUDA_ARCHS "" CACHE STRING
    "CUDA architectures in CMake syntax (default: 90a, plus 100a with CUDA >= 12.8)")

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

# CMAKE_CUDA_ARCHITECTURES is the user's choice when it differs from what this file computed
# last time (_UCCL_EP_CUDA_ARCHS_COMPUTED; empty after a user's choice, so that it is kept). A
# build directory configured before that record existed holds a computed value.
if(DEFINED CACHE{uccl_ep_BINARY_DIR} AND NOT DEFINED CACHE{_UCCL_EP_CUDA_ARCHS_COMPUTED})
  set(_UCCL_EP_CUDA_ARCHS_COMPUTED "${CMAKE_CUDA_ARCHITECTURES}" CACHE INTERNAL "")
endif()
if(UCCL_EP_CUDA_ARCHS)
  set(_uccl_archs "${UCCL_EP_CUDA_ARCHS}")
  set(_uccl_archs_from "UCCL_EP_CUDA_ARCHS")
elseif(DEFINED CMAKE_CUDA_ARCHITECTURES AND
       NOT "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "${_UCCL_EP_CUDA_ARCHS_COMPUTED}")
  set(_uccl_archs "${CMAKE_CUDA_ARCHITECTURES}")
  set(_uccl_archs_from "CMAKE_CUDA_ARCHITECTURES")
elseif(DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
  uccl_ep_torch_arch_list_to_cmake("$ENV{TORCH_CUDA_ARCH_LIST}" _uccl_archs)
  set(_uccl_archs_from "TORCH_CUDA_ARCH_LIST")
else()
  set(_uccl_archs "90a")  # uccl_ep_finish_cuda_archs() adds what the toolkit supports
  set(_uccl_archs_from "default")
endif()
set(CMAKE_CUDA_ARCHITECTURES "${_uccl_archs}" CACHE STRING "CUDA architectures" FORCE)

# After project(): the default list for this toolkit, the message, and UCCL_EP_SM90.
function(uccl_ep_finish_cuda_archs)
  set(archs "${CMAKE_CUDA_ARCHITECTURES}")
  if(_uccl_archs_from STREQUAL "default" AND
     CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.8)
    list(APPEND archs "100a")
  endif()
  set(CMAKE_CUDA_ARCHITECTURES "${archs}" CACHE STRING "CUDA architectures" FORCE)
  set(CMAKE_CUDA_ARCHITECTURES "${archs}" PARENT_SCOPE)
  if(_uccl_archs_from STREQUAL "CMAKE_CUDA_ARCHITECTURES")
    set(computed "")
  else()
    set(computed "${archs}")
  endif()
  set(_UCCL_EP_CUDA_ARCHS_COMPUTED "${computed}" CACHE INTERNAL "")
  message(STATUS "uccl-ep: CUDA architectures ${archs} (from ${_uccl_archs_from}, "
                 "CUDA ${CMAKE_CUDA_COMPILER_VERSION})")

  # SM90 features (FP8 paths) are compiled when every architecture is >= 90.
  set(sm90 ON)
  foreach(arch IN LISTS archs)
    string(REGEX MATCH "^[0-9]+" num "${arch}")
    if(num LESS 90)
      set(sm90 OFF)
    endif()
  endforeach()
  set(UCCL_EP_SM90 ${sm90} PARENT_SCOPE)
endfunction()
