// The data path end to end, in one process: a Node (gRPC Hello + UCX data
// server over a real UCX transport) and Clients, for each transport this
// machine has and both byte-moving protocols.
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/test_chunks.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "store/client/client.h"
#include "store/proto/data_wire.h"
#include "store/proto/kvdepot.grpc.pb.h"
#include "store/server/node.h"
#include "transfer/ucx/ucx_transport.h"

namespace kvd {
namespace {

using kvdepot::v1::DataProtocol;
using wire::Op;

ModelSpec SmallSpec() {
  ModelSpec s;
  s.model_id = "test/data-path";
  s.num_layers = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.chunk_tokens = 64;
  return s;
}

struct Case {
  const char* name;
  const char* tls;
  DataProtocol protocol;
};

const Case kCases[] = {
    {"tcp_am", "tcp", kvdepot::v1::DATA_PROTOCOL_AM},
    {"tcp_rma", "tcp", kvdepot::v1::DATA_PROTOCOL_RMA},
    {"shm_rma", "posix,cma,self", kvdepot::v1::DATA_PROTOCOL_RMA},
    {"shm_am", "posix,cma,self", kvdepot::v1::DATA_PROTOCOL_AM},
};

constexpr char kDataToken[] = "data-path-test-token";
constexpr char kAdminToken[] = "data-path-test-admin";

// A node on a free loopback port with a 64 MiB host tier and both tokens.
NodeSettings TestNodeSettings(const std::string& id, const std::string& tls) {
  NodeSettings s;
  s.node_id = id;
  s.listen = "127.0.0.1:0";
  s.shutdown_grace = absl::Seconds(1);
  s.store.host_capacity_bytes = 64ull << 20;
  s.store.host_huge_pages = false;
  s.ucx_tls = tls;
  s.data_token = kDataToken;
  s.admin_token = kAdminToken;
  return s;
}

// The same for raw-transport tests that speak without tokens.
NodeSettings NoTokenNodeSettings(const std::string& id) {
  NodeSettings s = TestNodeSettings(id, "tcp");
  s.data_token.clear();
  s.admin_token.clear();
  s.allow_no_token = true;
  return s;
}

class DataPathTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    NodeSettings s = TestNodeSettings("data-path-test", GetParam().tls);
    s.request_timeout = absl::Seconds(5);
    auto node = Node::Start(s);
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    client_ = NewClient();
    ASSERT_NE(client_, nullptr);
    buffer_.resize(16 << 20);
    auto reg = client_->RegisterBuffer(absl::MakeSpan(buffer_));
    ASSERT_TRUE(reg.ok()) << reg.status();
    registration_ = *std::move(reg);
  }

  void TearDown() override {
    registration_.reset();
    client_.reset();
    node_.reset();
  }

  std::unique_ptr<Client> NewClient() {
    ClientOptions o;
    o.address = node_->address();
    o.ucx_tls = GetParam().tls;
    o.protocol = GetParam().protocol;
    o.timeout = absl::Seconds(5);
    o.token = kDataToken;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Copies objects into the registered buffer; returns their spans there.
  std::vector<absl::Span<const uint8_t>> Stage(const TestPrompt& p) {
    std::vector<absl::Span<const uint8_t>> spans;
    size_t offset = 0;
    for (const auto& obj : p.objects) {
      std::memcpy(buffer_.data() + offset, obj.data(), obj.size());
      spans.emplace_back(buffer_.data() + offset, obj.size());
      offset += obj.size();
    }
    return spans;
  }

  std::unique_ptr<Node> node_;
  std::unique_ptr<Client> client_;
  std::vector<uint8_t> buffer_;
  std::unique_ptr<Registration> registration_;
};

TEST_P(DataPathTest, PutLookupGetBytesEndToEnd) {
  EXPECT_EQ(client_->hello().protocol(), GetParam().protocol);
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 1, 6);
  for (const absl::Status& s : client_->Put(p.keys, Stage(p))) {
    ASSERT_TRUE(s.ok()) << s;
  }
  EXPECT_EQ(*client_->Lookup(p.keys), 6u);
  EXPECT_EQ(node_->engine()->Stats().puts, 6u);

  // Into the second half of the buffer, at odd offsets.
  std::vector<GetTarget> targets;
  size_t offset = 8 << 20;
  for (size_t i = 0; i < p.keys.size(); ++i) {
    targets.push_back(
        {p.keys[i],
         true,
         {},
         absl::MakeSpan(buffer_.data() + offset + 3, p.objects[i].size())});
    offset += p.objects[i].size() + 64;
  }
  std::memset(buffer_.data() + (8 << 20), 0, 8 << 20);
  auto got = client_->Get(targets);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(*got[i], p.objects[i].size());
    EXPECT_TRUE(std::equal(p.objects[i].begin(), p.objects[i].end(),
                           targets[i].dst.begin()))
        << "chunk " << i;
  }
}

TEST_P(DataPathTest, PerKeyStatusesMissesDedupAndSelections) {
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 2, 3);
  auto spans = Stage(p);
  ASSERT_TRUE(client_->Put({p.keys[0]}, {spans[0]})[0].ok());
  // The first key again (dedup, no transfer) and a mislabelled object.
  std::vector<ChunkKey> keys = {p.keys[0], p.keys[1]};
  std::vector<absl::Span<const uint8_t>> objs = {spans[0], spans[2]};
  auto put = client_->Put(keys, objs);
  EXPECT_TRUE(put[0].ok()) << put[0];
  EXPECT_TRUE(absl::IsInvalidArgument(put[1])) << put[1];
  EXPECT_EQ(node_->engine()->Stats().dedup_puts, 1u);
  EXPECT_EQ(*client_->Lookup(p.keys), 1u);

  // A head slice of layers [1, 3): exactly the bytes the engine selects.
  ChunkSelection sel{1, 3, 1, 2};
  auto header = DecodeChunkHeader(p.objects[0]);
  ASSERT_TRUE(header.ok());
  auto ranges = SelectByteRanges(*header, sel);
  ASSERT_TRUE(ranges.ok());
  std::vector<uint8_t> expect;
  for (const ByteRange& r : *ranges) {
    expect.insert(expect.end(), p.objects[0].begin() + r.offset,
                  p.objects[0].begin() + r.offset + r.length);
  }
  uint8_t* dst = buffer_.data() + (12 << 20);
  std::vector<GetTarget> targets = {
      {p.keys[0], false, sel, absl::MakeSpan(dst, expect.size())},
      {p.keys[2], true, {}, absl::MakeSpan(dst + (1 << 20), 1 << 20)},
      {p.keys[0], true, {}, absl::MakeSpan(dst + (2 << 20), 100)},
  };
  auto got = client_->Get(targets);
  ASSERT_TRUE(got[0].ok()) << got[0].status();
  EXPECT_EQ(*got[0], expect.size());
  EXPECT_TRUE(std::equal(expect.begin(), expect.end(), dst));
  EXPECT_TRUE(absl::IsNotFound(got[1].status())) << got[1].status();
  EXPECT_TRUE(absl::IsInvalidArgument(got[2].status())) << got[2].status();
  EXPECT_NE(got[2].status().message().find("capacity"), std::string::npos);
}

TEST_P(DataPathTest, ExplicitByteRangesAndHeaderWithLayers) {
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 3, 1);
  ASSERT_TRUE(client_->Put(p.keys, Stage(p))[0].ok());
  const std::vector<uint8_t>& obj = p.objects[0];
  auto header = DecodeChunkHeader(obj);
  ASSERT_TRUE(header.ok());
  // Single rows here and there (two of them adjacent), and the header with
  // layers [0, 2), each checked against the object's own bytes.
  const uint64_t l2 = header->layers[2].offset;
  const std::vector<ChunkSelection> selections = {
      {.ranges = {{l2 + 640, 128}, {l2 + 768, 128}, {200, 8}, {l2, 1}}},
      {.layer_end = 2, .with_header = true},
  };
  uint8_t* dst = buffer_.data() + (12 << 20);
  for (const ChunkSelection& sel : selections) {
    auto ranges = SelectByteRanges(*header, sel);
    ASSERT_TRUE(ranges.ok()) << ranges.status();
    std::vector<uint8_t> expect;
    for (const ByteRange& r : *ranges) {
      expect.insert(expect.end(), obj.begin() + r.offset,
                    obj.begin() + r.offset + r.length);
    }
    auto got = client_->Get(
        {{p.keys[0], false, sel, absl::MakeSpan(dst, expect.size())}});
    ASSERT_TRUE(got[0].ok()) << got[0].status();
    EXPECT_EQ(*got[0], expect.size());
    EXPECT_TRUE(std::equal(expect.begin(), expect.end(), dst));
  }
  // A range past the object's end is refused by the node.
  auto past = client_->Get(
      {{p.keys[0], false, ChunkSelection{.ranges = {{obj.size() - 4, 8}}},
        absl::MakeSpan(dst, 8)}});
  EXPECT_TRUE(absl::IsInvalidArgument(past[0].status())) << past[0].status();
}

TEST_P(DataPathTest, ManyClientsConcurrently) {
  constexpr int kClients = 3;
  std::vector<std::thread> threads;
  std::vector<absl::Status> errors(kClients);
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<Client> client = NewClient();
      if (client == nullptr) return;
      std::vector<uint8_t> buf(4 << 20);
      auto reg = client->RegisterBuffer(absl::MakeSpan(buf));
      const TestPrompt p = MakeTestPrompt(SmallSpec(), 100 + c, 8);
      std::vector<absl::Span<const uint8_t>> spans;
      size_t off = 0;
      for (const auto& o : p.objects) {
        std::memcpy(buf.data() + off, o.data(), o.size());
        spans.emplace_back(buf.data() + off, o.size());
        off += o.size();
      }
      for (int round = 0; round < 3; ++round) {
        for (const absl::Status& s : client->Put(p.keys, spans)) {
          if (!s.ok()) errors[c] = s;
        }
        std::vector<GetTarget> t;
        for (size_t i = 0; i < p.keys.size(); ++i) {
          t.push_back({p.keys[i],
                       true,
                       {},
                       absl::MakeSpan(buf.data() + (2 << 20) + i * 140000,
                                      p.objects[i].size())});
        }
        auto got = client->Get(t);
        for (size_t i = 0; i < got.size(); ++i) {
          if (!got[i].ok()) {
            errors[c] = got[i].status();
          } else if (!std::equal(p.objects[i].begin(), p.objects[i].end(),
                                 t[i].dst.begin())) {
            errors[c] = absl::DataLossError("bytes differ");
          }
        }
      }
      reg->reset();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : errors) EXPECT_TRUE(s.ok()) << s;
}

TEST_P(DataPathTest, NodeRestartMeansUnavailableThenReconnect) {
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 3, 2);
  ASSERT_TRUE(client_->Put(p.keys, Stage(p))[0].ok());
  const int port = node_->port();
  node_.reset();
  // A node that is gone: every key fails with kUnavailable, within the
  // client's timeout, never a hang.
  const absl::Time start = absl::Now();
  auto lookup = client_->Lookup(p.keys);
  EXPECT_TRUE(absl::IsUnavailable(lookup.status())) << lookup.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(12));

  NodeSettings s = TestNodeSettings("data-path-test-2", GetParam().tls);
  s.listen = absl::StrCat("127.0.0.1:", port);
  auto node = Node::Start(s);
  ASSERT_TRUE(node.ok()) << node.status();
  node_ = *std::move(node);
  // The same client reconnects on its next call (the restarted node is empty).
  absl::StatusOr<size_t> again = client_->Lookup(p.keys);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 0u);
  EXPECT_TRUE(client_->Put(p.keys, Stage(p))[1].ok());
  EXPECT_EQ(*client_->Lookup(p.keys), 2u);
}

TEST_P(DataPathTest, HelloNeedsTheDataToken) {
  ClientOptions o;
  o.address = node_->address();
  o.ucx_tls = GetParam().tls;
  o.protocol = GetParam().protocol;
  o.timeout = absl::Seconds(5);
  o.token = "not-the-token";
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(c.status())) << c.status();
  o.token = kAdminToken;  // the admin token opens the data path too
  EXPECT_TRUE(Client::Connect(o).ok());
}

// A client that dies mid-request, seen from the node: nothing stays reserved
// or pinned once the request's deadline (or the peer failure) has passed.
TEST(DataPathFailureTest, DeadClientLeaksNoReservationOrPin) {
  NodeSettings s = NoTokenNodeSettings("dead-client-test");
  s.request_timeout = absl::Milliseconds(500);
  auto started = Node::Start(s);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Node> node = *std::move(started);
  StoreEngine* engine = node->engine();
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 7, 2);
  ASSERT_TRUE(engine->Put({p.keys[1]}, {p.objects[1]})[0].ok());
  const uint64_t allocated = engine->Stats().tiers[1].allocated_bytes;

  // A raw client: Hello, then a put whose data never comes and a get whose
  // reader disappears.
  auto transport = CreateUcxTransport({.tls = "tcp"});
  ASSERT_TRUE(transport.ok());
  auto stub = kvdepot::v1::Control::NewStub(
      grpc::CreateChannel(node->address(), grpc::InsecureChannelCredentials()));
  kvdepot::v1::HelloRequest hello;
  hello.set_protocol_version(wire::kProtocolVersion);
  hello.set_worker_address((*transport)->address());
  hello.set_preferred_protocol(kvdepot::v1::DATA_PROTOCOL_AM);
  kvdepot::v1::HelloResponse session;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->Hello(&context, hello, &session).ok());
  auto peer = (*transport)->Connect(session.worker_address(), nullptr);
  ASSERT_TRUE(peer.ok());
  wire::SessionId id;
  std::memcpy(id.data(), session.session_id().data(), id.size());
  auto send = [&](uint64_t request, Op op, std::string body) {
    auto held = std::make_shared<std::string>(std::move(body));
    (*transport)
        ->Send(
            *peer, wire::kRequest,
            wire::Encode(wire::RequestHeader{id, request, op}),
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(held->data()),
                                held->size()),
            [held](absl::Status) {});
  };
  send(1, Op::kPut,
       wire::Encode(wire::PutBody{"", {{p.keys[0], p.objects[0].size(), 0}}}));
  wire::GetItem item;
  item.key = p.keys[1];
  item.capacity = p.objects[1].size();
  send(2, Op::kGet, wire::Encode(wire::GetBody{"", {item}}));
  // The node reserved room for the put and waits for its data.
  const absl::Time reserved_by = absl::Now() + absl::Seconds(5);
  while (absl::Now() < reserved_by &&
         engine->Stats().tiers[1].allocated_bytes == allocated) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GT(engine->Stats().tiers[1].allocated_bytes, allocated);
  transport->reset();  // the client dies

  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline &&
         (engine->Stats().tiers[1].allocated_bytes != allocated ||
          engine->Inspect(p.keys[1])->pins != 0)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(engine->Stats().tiers[1].allocated_bytes, allocated);
  EXPECT_EQ(engine->Inspect(p.keys[1])->pins, 0u);
  EXPECT_EQ(engine->Lookup({p.keys[0]}), 0u);
}

// Requests naming no session are dropped and never touch the engine.
TEST(DataPathFailureTest, UnknownSessionIsDropped) {
  auto node = Node::Start(NoTokenNodeSettings("unknown-session-test"));
  ASSERT_TRUE(node.ok());
  auto transport = CreateUcxTransport({.tls = "tcp"});
  ASSERT_TRUE(transport.ok());
  // Without Hello there is no node address to reach: take it from a real
  // session, then forge the session id.
  ClientOptions o;
  o.address = (*node)->address();
  o.ucx_tls = "tcp";
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok());
  auto peer =
      (*transport)->Connect((*client)->hello().worker_address(), nullptr);
  ASSERT_TRUE(peer.ok());
  const TestPrompt p = MakeTestPrompt(SmallSpec(), 8, 1);
  auto body = std::make_shared<std::string>(
      wire::Encode(wire::PutBody{"", {{p.keys[0], p.objects[0].size(), 0}}}));
  absl::Notification sent;
  (*transport)
      ->Send(*peer, wire::kRequest,
             wire::Encode(wire::RequestHeader{wire::SessionId{}, 1, Op::kPut}),
             absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(body->data()),
                                 body->size()),
             [&](absl::Status) { sent.Notify(); });
  sent.WaitForNotification();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ((*node)->engine()->Stats().tiers[1].allocated_bytes, 0u);
  std::string text = (*node)->metrics()->RenderText();
  EXPECT_NE(text.find("kvdepot_data_unknown_session_total 1"),
            std::string::npos)
      << text;
}

// UCX joins two endpoints only when both ask for the same failure handling:
// a client whose UCX_TLS disagrees with the node's is told so at Connect.
TEST(DataPathFailureTest, MismatchedUcxTransportsAreRefusedClearly) {
  auto node = Node::Start(NoTokenNodeSettings("mismatch-test"));
  ASSERT_TRUE(node.ok()) << node.status();
  ClientOptions o;
  o.address = (*node)->address();
  o.ucx_tls = "tcp,posix,cma,self";
  auto client = Client::Connect(o);
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(client.status())) << client.status();
  EXPECT_NE(client.status().message().find("same UCX_TLS"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Transports, DataPathTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace kvd
