// ControlChannel: a gRPC channel to a node's Control service, plaintext or
// TLS, plus the bearer token its calls carry. Shared by kvdepotctl and the
// client library.
//
//   KVD_ASSIGN_OR_RETURN(ControlChannel ch, ControlChannel::Create(
//       {.address = "10.0.0.5:7400", .tls_ca = "/etc/kvdepot/ca.pem",
//        .token = token}));
//   auto stub = kvdepot::v1::Control::NewStub(ch.channel());
//   grpc::ClientContext context;
//   ch.Authorize(&context);
//   stub->Stats(&context, request, &response);
//
// TLS is on when any of tls_ca, tls_cert, tls_key is set: the node's
// certificate is verified against tls_ca (or the system roots when empty),
// and tls_cert/tls_key (together) are presented to nodes that require client
// certificates. The token goes per call (Authorize) rather than as channel
// call-credentials, so it also works on plaintext channels (local
// development); over the network use TLS, or the token travels in clear.
//
// Thread safety: immutable after Create; copies share the channel.
#ifndef KVDEPOT_STORE_CLIENT_CONTROL_CHANNEL_H_
#define KVDEPOT_STORE_CLIENT_CONTROL_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace kvd {

struct ControlChannelOptions {
  std::string address;   // HOST:PORT of the node's control service
  std::string tls_ca;    // PEM file: CA of the node's certificate
  std::string tls_cert;  // PEM file: client certificate chain
  std::string tls_key;   // PEM file: client private key
  // Name checked against the node's certificate instead of the host of
  // `address` (e.g. "localhost" when dialing 127.0.0.1).
  std::string tls_server_name;
  std::string token;  // sent as "authorization: Bearer <token>"; empty: none
};

class ControlChannel {
 public:
  // kInvalidArgument naming the option: address not HOST:PORT with a port in
  // 1..65535, tls_cert without tls_key (or the reverse), an unreadable PEM
  // file, a token with characters gRPC metadata cannot carry. Creates the
  // channel lazily: nothing connects until the first call.
  static absl::StatusOr<ControlChannel> Create(
      const ControlChannelOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const std::string& address() const { return address_; }
  bool tls() const { return tls_; }

  // Adds the authorization metadata to a call about to be made (nothing
  // without a token).
  void Authorize(grpc::ClientContext* context) const;

 private:
  ControlChannel() = default;

  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  std::string authorization_;  // "Bearer <token>", or empty
  bool tls_ = false;
};

}  // namespace kvd

#endif  // KVDEPOT_STORE_CLIENT_CONTROL_CHANNEL_H_
