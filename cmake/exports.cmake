# Lists the public API: every sm_* function declared in include/skillmeat/*.h
# (comments removed first). Writes two linker inputs into the build tree:
#   skillmeat.map  version script of libskillmeat.so: these symbols, nothing else
#   skillmeat.dyn  dynamic list of the skillmeat program, so that plug-ins it
#                  loads call its copy of the library (one error state, one
#                  connector registry) instead of a second copy
# Editing a public header reruns this at the next build.
file(GLOB SKILLMEAT_PUBLIC_HEADERS ${CMAKE_SOURCE_DIR}/include/skillmeat/*.h)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${SKILLMEAT_PUBLIC_HEADERS})

set(exported "")
foreach(header ${SKILLMEAT_PUBLIC_HEADERS})
  file(READ ${header} text)
  string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" text "${text}")
  string(REGEX MATCHALL "[^A-Za-z0-9_(](sm_[a-z0-9_]+)[ \t]*\\(" calls "${text}")
  foreach(call ${calls})
    string(REGEX REPLACE "^.(sm_[a-z0-9_]+).*" "\\1" name "${call}")
    list(APPEND exported ${name})
  endforeach()
endforeach()
list(REMOVE_DUPLICATES exported)
list(SORT exported)

set(map "{\n  global:\n")
set(dyn "{\n")
foreach(name ${exported})
  string(APPEND map "    ${name};\n")
  string(APPEND dyn "  ${name};\n")
endforeach()
string(APPEND map "  local:\n    *;\n};\n")
string(APPEND dyn "};\n")
set(SKILLMEAT_EXPORT_MAP ${CMAKE_BINARY_DIR}/skillmeat.map)
set(SKILLMEAT_EXPORT_DYN ${CMAKE_BINARY_DIR}/skillmeat.dyn)
file(CONFIGURE OUTPUT ${SKILLMEAT_EXPORT_MAP} CONTENT "${map}")
file(CONFIGURE OUTPUT ${SKILLMEAT_EXPORT_DYN} CONTENT "${dyn}")
