#include "store/proto/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kvd {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status,
                            absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  int code = static_cast<int>(status.error_code());
  // Both enums follow google.rpc.Code: 0..16. Anything else is unknown.
  absl::StatusCode absl_code = (code > 0 && code <= 16)
                                   ? static_cast<absl::StatusCode>(code)
                                   : absl::StatusCode::kUnknown;
  std::string message = status.error_message();
  if (!context.empty()) message = absl::StrCat(context, ": ", message);
  return absl::Status(absl_code, message);
}

}  // namespace kvd
