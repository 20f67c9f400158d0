# SPDX-License-Identifier: MIT
# Find libnuma (Debian: libnuma-dev), the NUMA policy library.
#
# Defines numa_FOUND, numa_INCLUDE_DIR, numa_LIBRARY and the imported
# target numa::numa. Used by iopool's build and installed with its CMake
# package, where iopoolConfig.cmake calls find_dependency(numa) for the
# static library (whose link line needs -lnuma); libnuma ships neither a
# CMake package nor a pkg-config file on Debian 12, hence this module.
find_path(numa_INCLUDE_DIR numa.h)
find_library(numa_LIBRARY numa)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(numa REQUIRED_VARS numa_LIBRARY numa_INCLUDE_DIR)
mark_as_advanced(numa_INCLUDE_DIR numa_LIBRARY)
if(numa_FOUND AND NOT TARGET numa::numa)
  add_library(numa::numa UNKNOWN IMPORTED)
  set_target_properties(numa::numa PROPERTIES
    IMPORTED_LOCATION "${numa_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${numa_INCLUDE_DIR}")
endif()
