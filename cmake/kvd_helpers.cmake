# Build helpers in the manner of Abseil's absl_cc_library / absl_cc_test.
include_guard(GLOBAL)
include(CMakeParseArguments)

# GCC 12 reports -Wmaybe-uninitialized false positives through absl::StatusOr.
set(KVD_DEFAULT_COPTS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
    $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>
    $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>)
if(KVD_WERROR)
  list(APPEND KVD_DEFAULT_COPTS -Werror)
endif()

# kvd_cc_library(NAME n [HDRS ...] [SRCS ...] [DEPS ...] [COPTS ...])
# Defines target kvd_<n> (alias kvd::<n>). Header-only when SRCS is empty.
function(kvd_cc_library)
  cmake_parse_arguments(KVD "" "NAME" "HDRS;SRCS;DEPS;COPTS" ${ARGN})
  set(_target kvd_${KVD_NAME})
  if(KVD_SRCS)
    add_library(${_target} STATIC ${KVD_SRCS} ${KVD_HDRS})
    target_include_directories(${_target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${_target} PUBLIC ${KVD_DEPS})
    target_compile_options(${_target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:${KVD_DEFAULT_COPTS} ${KVD_COPTS}>)
  else()
    add_library(${_target} INTERFACE)
    target_include_directories(${_target} INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${_target} INTERFACE ${KVD_DEPS})
  endif()
  add_library(kvd::${KVD_NAME} ALIAS ${_target})
endfunction()

# kvd_cc_binary(NAME n SRCS ... [DEPS ...] [OUTPUT_NAME name])
function(kvd_cc_binary)
  cmake_parse_arguments(KVD "" "NAME;OUTPUT_NAME" "SRCS;DEPS;COPTS" ${ARGN})
  add_executable(${KVD_NAME} ${KVD_SRCS})
  target_link_libraries(${KVD_NAME} PRIVATE ${KVD_DEPS})
  target_compile_options(${KVD_NAME} PRIVATE ${KVD_DEFAULT_COPTS} ${KVD_COPTS})
  if(KVD_OUTPUT_NAME)
    set_target_properties(${KVD_NAME} PROPERTIES OUTPUT_NAME ${KVD_OUTPUT_NAME})
  endif()
endfunction()

# kvd_cc_test(NAME n SRCS ... [DEPS ...] [LABELS ...] [TIMEOUT s] [ARGS ...])
# One CTest test per binary, linked with gtest_main unless NO_MAIN is given.
function(kvd_cc_test)
  cmake_parse_arguments(KVD "NO_MAIN" "NAME;TIMEOUT" "SRCS;DEPS;LABELS;ARGS;COPTS" ${ARGN})
  add_executable(${KVD_NAME} ${KVD_SRCS})
  set(_main GTest::gtest_main)
  if(KVD_NO_MAIN)
    set(_main GTest::gtest)
  endif()
  target_link_libraries(${KVD_NAME} PRIVATE ${KVD_DEPS} GTest::gmock ${_main})
  target_compile_options(${KVD_NAME} PRIVATE ${KVD_DEFAULT_COPTS} ${KVD_COPTS})
  add_test(NAME ${KVD_NAME} COMMAND ${KVD_NAME} ${KVD_ARGS})
  if(NOT KVD_TIMEOUT)
    set(KVD_TIMEOUT 300)
  endif()
  set_tests_properties(${KVD_NAME} PROPERTIES TIMEOUT ${KVD_TIMEOUT})
  if(KVD_LABELS)
    set_tests_properties(${KVD_NAME} PROPERTIES LABELS "${KVD_LABELS}")
  endif()
endfunction()

# kvd_cc_fuzzer(NAME n SRCS ... [DEPS ...] [CORPUS dir])
# A libFuzzer target, built only with KVD_BUILD_FUZZERS (clang). Registered in
# CTest to run for KVD_FUZZ_SECONDS from the checked-in seed corpus.
function(kvd_cc_fuzzer)
  cmake_parse_arguments(KVD "" "NAME;CORPUS" "SRCS;DEPS" ${ARGN})
  if(NOT KVD_BUILD_FUZZERS)
    return()
  endif()
  add_executable(${KVD_NAME} ${KVD_SRCS})
  target_link_libraries(${KVD_NAME} PRIVATE ${KVD_DEPS})
  target_compile_options(${KVD_NAME} PRIVATE -fsanitize=fuzzer ${KVD_DEFAULT_COPTS})
  target_link_options(${KVD_NAME} PRIVATE -fsanitize=fuzzer)
  set(_work ${CMAKE_CURRENT_BINARY_DIR}/${KVD_NAME}_corpus)
  set(_seeds "")
  if(KVD_CORPUS)
    set(_seeds ${KVD_CORPUS})
  endif()
  add_test(NAME ${KVD_NAME}
           COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
                   $<TARGET_FILE:${KVD_NAME}> -max_total_time=${KVD_FUZZ_SECONDS}
                   -rss_limit_mb=2048 -print_final_stats=1 ${_work} ${_seeds})
  set_tests_properties(${KVD_NAME} PROPERTIES LABELS fuzz
                       TIMEOUT 600 FIXTURES_REQUIRED ${KVD_NAME}_dir)
  add_test(NAME ${KVD_NAME}_mkdir COMMAND ${CMAKE_COMMAND} -E make_directory ${_work})
  set_tests_properties(${KVD_NAME}_mkdir PROPERTIES FIXTURES_SETUP ${KVD_NAME}_dir)
endfunction()

# kvd_proto_library(NAME n PROTO file.proto)
# protoc + the gRPC plugin -> target kvd_<n> (alias kvd::<n>). Generated files
# mirror the source path under ${PROJECT_BINARY_DIR}: "a/b.proto" is included
# as "a/b.pb.h" and "a/b.grpc.pb.h".
function(kvd_proto_library)
  cmake_parse_arguments(KVD "" "NAME;PROTO" "" ${ARGN})
  if(TARGET gRPC::grpc_cpp_plugin)
    set(_plugin $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
  else()
    find_program(_kvd_grpc_plugin grpc_cpp_plugin REQUIRED)
    set(_plugin ${_kvd_grpc_plugin})
  endif()
  if(TARGET protobuf::protoc)
    set(_protoc $<TARGET_FILE:protobuf::protoc>)
  else()
    set(_protoc ${Protobuf_PROTOC_EXECUTABLE})
  endif()
  get_filename_component(_src ${KVD_PROTO} ABSOLUTE)
  file(RELATIVE_PATH _rel ${PROJECT_SOURCE_DIR} ${_src})
  string(REGEX REPLACE "\\.proto$" "" _stem ${_rel})
  get_filename_component(_out_dir ${PROJECT_BINARY_DIR}/${_stem} DIRECTORY)
  set(_gen
      ${PROJECT_BINARY_DIR}/${_stem}.pb.cc ${PROJECT_BINARY_DIR}/${_stem}.pb.h
      ${PROJECT_BINARY_DIR}/${_stem}.grpc.pb.cc ${PROJECT_BINARY_DIR}/${_stem}.grpc.pb.h)
  add_custom_command(
    OUTPUT ${_gen}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_out_dir}
    COMMAND ${_protoc}
            --proto_path=${PROJECT_SOURCE_DIR}
            --cpp_out=${PROJECT_BINARY_DIR}
            --grpc_out=${PROJECT_BINARY_DIR}
            --plugin=protoc-gen-grpc=${_plugin}
            ${_src}
    DEPENDS ${_src}
    COMMENT "protoc: ${_rel}"
    VERBATIM)
  # Generated code does not build cleanly under our warning flags: plain target.
  add_library(kvd_${KVD_NAME} STATIC ${_gen})
  target_include_directories(kvd_${KVD_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(kvd_${KVD_NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++)
  add_library(kvd::${KVD_NAME} ALIAS kvd_${KVD_NAME})
endfunction()
