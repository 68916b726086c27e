# ROS 2 from PyPI wheels: their exported CMake targets carry include paths of the machine
# that built the wheels (/opt/python/...). Drop paths that do not exist here. On a normal ROS
# install every path exists, so this changes nothing. Include it at the end of an interface
# package's CMakeLists.txt (more_msgs, the vendored tf2_msgs).
get_directory_property(_more_imported IMPORTED_TARGETS)
foreach(_target IN LISTS _more_imported)
  get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
  if(_dirs)
    set(_kept "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
  endif()
endforeach()
