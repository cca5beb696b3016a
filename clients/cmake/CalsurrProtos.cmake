# calsurr_generate_protos(<target> <proto dir> <out var> MESSAGES <name>... SERVICES <name>...)
#
# Generates the C++ messages (protoc) and gRPC stubs (grpc_cpp_plugin) of <proto dir>/<name>.proto into the
# build tree at build time, and compiles them into the OBJECT library <target> (position independent, hidden
# symbols, -O1 in optimised builds). <out var> is set to the folder of the generated headers. Nothing generated
# is ever committed.
function(calsurr_generate_protos target proto_dir out_var)
  cmake_parse_arguments(PARSE_ARGV 3 arg "" "" "MESSAGES;SERVICES")
  set(generated "${CMAKE_CURRENT_BINARY_DIR}/generated")
  file(MAKE_DIRECTORY "${generated}")
  set(protos)
  set(outputs)
  set(sources)
  foreach(name IN LISTS arg_MESSAGES)
    list(APPEND protos "${proto_dir}/${name}.proto")
    list(APPEND outputs "${generated}/${name}.pb.cc" "${generated}/${name}.pb.h"
                        "${generated}/${name}.grpc.pb.cc" "${generated}/${name}.grpc.pb.h")
    list(APPEND sources "${generated}/${name}.pb.cc")
    if(name IN_LIST arg_SERVICES)
      list(APPEND sources "${generated}/${name}.grpc.pb.cc")
    endif()
  endforeach()
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND protobuf::protoc --proto_path=${proto_dir} --cpp_out=${generated} --grpc_out=${generated}
            --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin> ${protos}
    DEPENDS ${protos} protobuf::protoc gRPC::grpc_cpp_plugin
    COMMENT "protoc + grpc_cpp_plugin: C++ code for ${arg_MESSAGES}"
    VERBATIM)
  add_library(${target} OBJECT ${sources})
  target_include_directories(${target} PUBLIC "${generated}")
  target_link_libraries(${target} PUBLIC gRPC::grpc++ protobuf::libprotobuf)
  target_compile_features(${target} PUBLIC cxx_std_17)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden
                                             VISIBILITY_INLINES_HIDDEN ON)
  # The generated code moves a few fields and one large bytes field (copied by libprotobuf itself): -O1 runs it
  # as fast for that and compiles in about 60 % of the time of -O3 (grpc_service.pb.cc: 10 s against 16 s).
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<OR:$<CONFIG:Release>,$<CONFIG:RelWithDebInfo>>:-O1>)
  endif()
  set(${out_var} "${generated}" PARENT_SCOPE)
endfunction()
