#include "store/client/control_channel.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/host_port.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "store/proto/tls_files.h"

namespace kvd {
namespace {

// Control messages stay small; matches the node's receive limit.
constexpr int kMaxControlMessageBytes = 4 << 20;

absl::Status ValidateToken(const std::string& token) {
  for (char c : token) {
    // gRPC metadata values are printable ASCII; a bearer token has no spaces.
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(
          "token holds a space, control or non-ASCII character; gRPC "
          "metadata cannot carry it");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ControlChannel> ControlChannel::Create(
    const ControlChannelOptions& options) {
  KVD_RETURN_IF_ERROR(ValidateDialAddress("address", options.address));
  KVD_RETURN_IF_ERROR(ValidateToken(options.token));
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls_cert=\"", options.tls_cert, "\" and tls_key=\"", options.tls_key,
        "\" go together: set both to present a client certificate"));
  }
  ControlChannel out;
  out.address_ = options.address;
  if (!options.token.empty()) {
    out.authorization_ = absl::StrCat("Bearer ", options.token);
  }
  out.tls_ = !options.tls_ca.empty() || !options.tls_cert.empty();
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (out.tls_) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      KVD_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                           ReadPemFile("tls_ca", options.tls_ca));
    }
    if (!options.tls_cert.empty()) {
      KVD_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                           ReadPemFile("tls_cert", options.tls_cert));
      KVD_ASSIGN_OR_RETURN(ssl.pem_private_key,
                           ReadPemFile("tls_key", options.tls_key));
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxControlMessageBytes);
  if (out.tls_ && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  out.channel_ = grpc::CreateCustomChannel(options.address, credentials, args);
  return out;
}

void ControlChannel::Authorize(grpc::ClientContext* context) const {
  if (!authorization_.empty()) {
    context->AddMetadata("authorization", authorization_);
  }
}

}  // namespace kvd
