# The C++ package: libuccl_ep.so, one shared library with the public API of include/uccl_ep/,
# its headers, and a CMake package config, so that a C++ project can write
#
#   find_package(uccl_ep CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE uccl_ep::uccl_ep)
#
# The public API is defined in uccl_ep_runtime, uccl_ep_host and uccl_ep_common: their objects go
# into the library whole. Kernels, proxies, queues, transports and the CUDA runtime (static) are
# taken from their static libraries as needed, and their symbols stay hidden, so none of the
# internal libraries is installed. A consumer gets include/, C++20 and CUDA::cudart (the headers
# include cuda_runtime_api.h): device pointers and streams pass between the two CUDA runtimes,
# as they do between PyTorch and the Python module.
#
# UCCL_EP_INSTALL_CPP=OFF (wheel builds) leaves the target out of `all` and installs nothing; the
# install rules are in the component `cpp` (the wheel installs only the component `python`).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(UCCL_EP_INSTALL_CPP)
  set(_uccl_in_all "")
else()
  set(_uccl_in_all EXCLUDE_FROM_ALL)
endif()
add_library(uccl_ep SHARED ${_uccl_in_all} $<TARGET_OBJECTS:uccl_ep_runtime>
                           $<TARGET_OBJECTS:uccl_ep_host> $<TARGET_OBJECTS:uccl_ep_common>)
add_library(uccl_ep::uccl_ep ALIAS uccl_ep)
target_link_libraries(uccl_ep PRIVATE uccl_ep_runtime INTERFACE CUDA::cudart)
target_include_directories(uccl_ep INTERFACE $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(uccl_ep INTERFACE cxx_std_20)
target_link_options(uccl_ep PRIVATE LINKER:--exclude-libs,ALL)
if(NOT UCCL_EP_SANITIZE AND NOT UCCL_EP_TSAN)  # sanitized libraries leave runtime calls open
  target_link_options(uccl_ep PRIVATE LINKER:--no-undefined)
endif()
set_target_properties(uccl_ep PROPERTIES VERSION ${PROJECT_VERSION}
                                         SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})

if(NOT UCCL_EP_INSTALL_CPP)
  return()
endif()

set(_uccl_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/uccl_ep)
install(TARGETS uccl_ep EXPORT uccl_epTargets COMPONENT cpp
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/uccl_ep DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT cpp FILES_MATCHING PATTERN "*.h")
install(EXPORT uccl_epTargets NAMESPACE uccl_ep:: DESTINATION ${_uccl_cmake_dir} COMPONENT cpp)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/uccl_epConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/uccl_epConfig.cmake
                              INSTALL_DESTINATION ${_uccl_cmake_dir})
# 0.x: a minor release may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/uccl_epConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/uccl_epConfig.cmake ${PROJECT_BINARY_DIR}/uccl_epConfigVersion.cmake
        DESTINATION ${_uccl_cmake_dir} COMPONENT cpp)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/uccl_ep
        COMPONENT cpp)
