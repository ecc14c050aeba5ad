// The admin RPCs and Hello of ControlService, called through an in-process
// gRPC server so that metadata (tokens), peers and streams are real.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/test_chunks.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "store/proto/grpc_status.h"
#include "store/server/control_service.h"

namespace kvd {
namespace {

namespace pb = kvdepot::v1;
using ::testing::HasSubstr;

constexpr char kDataToken[] = "data-token-1";
constexpr char kAdminToken[] = "admin-token-1";

class FakeHandshake : public DataPathHandshake {
 public:
  absl::StatusOr<pb::HelloResponse> Hello(const pb::HelloRequest& request,
                                          absl::string_view peer) override {
    calls++;
    last_peer = std::string(peer);
    if (request.protocol_version() != 1) {
      return absl::FailedPreconditionError("protocol_version=2 unsupported");
    }
    pb::HelloResponse response;
    response.set_protocol_version(1);
    response.set_node_id("fake");
    return response;
  }
  int calls = 0;
  std::string last_peer;
};

class ControlAdminTest : public ::testing::Test {
 protected:
  void Start(bool with_ssd, DataPathHandshake* handshake = nullptr) {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat(
               "kvd_control_admin_test_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    StoreOptions options;
    options.host_capacity_bytes = 16ull << 20;
    options.host_huge_pages = false;
    if (with_ssd) {
      options.ssd_dir = dir_.string();
      options.ssd_capacity_bytes = 16ull << 20;
      options.ssd_segment_bytes = 4ull << 20;
      options.ssd_direct_io = false;
    }
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(engine).value();
    NodeInfo info{"n1", "9.9.9", "in-process", pb::MODE_STANDALONE,
                  clock_.Now()};
    ControlServiceOptions service_options;
    service_options.auth = {kDataToken, kAdminToken, false};
    service_options.metrics = &metrics_;
    service_options.handshake = handshake;
    service_options.move_chunks = move_chunks_;
    service_ = std::make_unique<ControlService>(engine_.get(), info, &clock_,
                                                service_options);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = pb::Control::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
      server_->Wait();
    }
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    return context;
  }

  absl::StatusOr<pb::ListChunksResponse> List(
      const pb::ListChunksRequest& request,
      const std::string& token = kAdminToken) {
    pb::ListChunksResponse response;
    grpc::Status s =
        stub_->ListChunks(Context(token).get(), request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    return response;
  }
  absl::StatusOr<pb::InspectResponse> Inspect(
      const std::string& key, const std::string& token = kAdminToken) {
    pb::InspectRequest request;
    request.set_key(key);
    pb::InspectResponse response;
    grpc::Status s = stub_->Inspect(Context(token).get(), request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    return response;
  }
  absl::StatusOr<pb::EvictResponse> Evict(
      const std::vector<std::string>& keys,
      const std::string& token = kAdminToken) {
    pb::EvictRequest request;
    for (const std::string& k : keys) request.add_keys(k);
    pb::EvictResponse response;
    grpc::Status s = stub_->Evict(Context(token).get(), request, &response);
    if (!s.ok()) return FromGrpcStatus(s);
    return response;
  }
  // Every progress message, then the final status.
  absl::Status Drain(std::vector<pb::DrainProgress>* messages,
                     const std::string& token = kAdminToken,
                     const pb::DrainRequest& request = pb::DrainRequest()) {
    auto context = Context(token);
    auto reader = stub_->Drain(context.get(), request);
    pb::DrainProgress progress;
    while (reader->Read(&progress)) messages->push_back(progress);
    return FromGrpcStatus(reader->Finish());
  }

  TestPrompt PutPrompt(uint32_t seed, int chunks,
                       const std::string& model = "test/chunks") {
    TestPrompt p = MakeTestPrompt(TestChunkSpec(model), seed, chunks);
    for (const absl::Status& s : engine_->Put(p.keys, p.Spans())) {
      EXPECT_TRUE(s.ok()) << s;
    }
    return p;
  }

  std::string Metrics() { return metrics_.RenderText(); }

  // What the node plugs in for a cluster drain; set before Start().
  decltype(ControlServiceOptions::move_chunks) move_chunks_;
  std::filesystem::path dir_;
  FakeClock clock_;
  MetricsRegistry metrics_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<ControlService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pb::Control::Stub> stub_;
};

TEST_F(ControlAdminTest, AdminRpcsNeedTheAdminToken) {
  Start(false);
  TestPrompt p = PutPrompt(1, 1);
  const std::string key = p.keys[0].Hex();
  for (const std::string& token : {std::string(), std::string("nope")}) {
    EXPECT_EQ(List({}, token).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Inspect(key, token).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(Evict({key}, token).status().code(),
              absl::StatusCode::kUnauthenticated);
    std::vector<pb::DrainProgress> messages;
    EXPECT_EQ(Drain(&messages, token).code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_TRUE(messages.empty());
  }
  absl::StatusOr<pb::EvictResponse> denied = Evict({key}, kDataToken);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(List({}, kDataToken).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Nothing happened: the chunk is there and the node still takes writes.
  EXPECT_EQ(engine_->Lookup(p.keys), 1u);
  EXPECT_FALSE(engine_->writes_stopped());
  // The token is checked before the request: no field is named.
  absl::StatusOr<pb::InspectResponse> bad = Inspect("zz", "nope");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(bad.status().message(), ::testing::Not(HasSubstr("key=")));

  std::string text = Metrics();
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"missing\"} 4"));
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"invalid\"} 5"));
  EXPECT_THAT(text,
              HasSubstr("kvdepot_auth_failures_total{reason=\"not_admin\"} 2"));
}

TEST_F(ControlAdminTest, ListChunksFollowsPageTokensAndFilters) {
  Start(false);
  TestPrompt a = PutPrompt(1, 12, "test/a");
  TestPrompt b = PutPrompt(2, 13, "test/b");
  pb::ListChunksRequest request;
  request.set_page_size(10);
  std::set<std::string> seen;
  int pages = 0;
  do {
    absl::StatusOr<pb::ListChunksResponse> page = List(request);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->chunks_size(), 10);
    for (const pb::ChunkSummary& c : page->chunks()) {
      EXPECT_TRUE(seen.insert(c.key()).second);
      EXPECT_EQ(c.tier(), pb::TIER_HOST);
      EXPECT_EQ(c.namespace_fingerprint().size(), 64u);
      EXPECT_GT(c.object_bytes(), 0u);
    }
    request.set_page_token(page->next_page_token());
    ++pages;
  } while (!request.page_token().empty() && pages < 100);
  EXPECT_EQ(seen.size(), 25u);
  EXPECT_EQ(pages, 3);

  pb::ListChunksRequest by_ns;
  by_ns.set_namespace_fingerprint(TestChunkSpec("test/b").Fingerprint().Hex());
  absl::StatusOr<pb::ListChunksResponse> only_b = List(by_ns);
  ASSERT_TRUE(only_b.ok()) << only_b.status();
  EXPECT_EQ(only_b->chunks_size(), 13);
  EXPECT_TRUE(only_b->next_page_token().empty());
  pb::ListChunksRequest by_tier;
  by_tier.set_tier(pb::TIER_SSD);
  EXPECT_EQ(List(by_tier)->chunks_size(), 0);
}

TEST_F(ControlAdminTest, ListChunksNamesTheBadField) {
  Start(false);
  struct Case {
    pb::ListChunksRequest request;
    std::string want;
  };
  std::vector<Case> cases(5);
  cases[0].request.set_namespace_fingerprint("abc");
  cases[0].want = "namespace_fingerprint=\"abc\" is not 64 hex digits";
  cases[1].request.set_page_size(1001);
  cases[1].want = "page_size=1001 exceeds the maximum 1000";
  cases[2].request.set_tier(static_cast<pb::Tier>(9));
  cases[2].want = "tier=9 is not a known tier";
  cases[3].request.set_page_token("garbage");
  cases[3].want = "page_token=\"garbage\"";
  cases[4].request.set_page_token("c1.0");
  cases[4].want = "page_token=\"c1.0\"";
  for (const Case& c : cases) {
    absl::StatusOr<pb::ListChunksResponse> r = List(c.request);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.want;
    EXPECT_THAT(r.status().message(), HasSubstr(c.want));
  }
  pb::ListChunksRequest max;
  max.set_page_size(1000);
  EXPECT_TRUE(List(max).ok());
}

TEST_F(ControlAdminTest, InspectReportsHeaderAndPlacement) {
  Start(false);
  TestPrompt p = PutPrompt(3, 2);
  absl::StatusOr<pb::InspectResponse> r = Inspect(p.keys[1].Hex());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->key(), p.keys[1].Hex());
  EXPECT_EQ(r->parent(), p.keys[0].Hex());
  EXPECT_EQ(r->namespace_fingerprint(), TestChunkSpec().Fingerprint().Hex());
  EXPECT_EQ(r->format_version(), 1u);
  EXPECT_EQ(r->token_count(), 64u);
  EXPECT_EQ(r->num_layers(), 4u);
  EXPECT_EQ(r->kv_heads(), 2u);
  EXPECT_EQ(r->head_dim(), 64u);
  EXPECT_EQ(r->dtype(), "bf16");
  EXPECT_EQ(r->layout(), "separate_kv");
  EXPECT_EQ(r->codec_chain(), "");
  EXPECT_EQ(r->object_bytes(), p.objects[1].size());
  ASSERT_EQ(r->layers_size(), 4);
  EXPECT_EQ(r->layers(0).offset(), r->header_bytes());
  EXPECT_EQ(r->layers(3).size(), 32768u);
  EXPECT_EQ(r->tier(), pb::TIER_HOST);
  EXPECT_FALSE(r->on_ssd());
  EXPECT_EQ(Inspect(p.keys[0].Hex())->children(), 1u);
  EXPECT_TRUE(Inspect(p.keys[0].Hex())->parent().empty());

  absl::StatusOr<pb::InspectResponse> bad = Inspect("xyz");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("key=\"xyz\""));
  EXPECT_EQ(Inspect(std::string(64, 'a')).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ControlAdminTest, EvictReportsEachKey) {
  Start(false);
  TestPrompt p = PutPrompt(4, 3);
  const std::string missing(64, 'b');
  absl::StatusOr<pb::EvictResponse> r =
      Evict({p.keys[2].Hex(), missing, p.keys[1].Hex()});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 3);
  EXPECT_EQ(r->evicted(), 2u);
  EXPECT_EQ(r->results(0).code(), 0);
  EXPECT_EQ(r->results(1).key(), missing);
  EXPECT_EQ(r->results(1).code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_THAT(r->results(1).message(), HasSubstr("not stored"));
  EXPECT_EQ(engine_->Lookup(p.keys), 1u);

  absl::StatusOr<pb::EvictResponse> bad = Evict({p.keys[0].Hex(), "12"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("keys[1]=\"12\""));
  EXPECT_EQ(engine_->Lookup(p.keys), 1u);  // nothing evicted on a bad request
  EXPECT_THAT(Evict({}).status().message(), HasSubstr("keys has 0 entries"));
  std::vector<std::string> many(1001, missing);
  EXPECT_THAT(Evict(many).status().message(), HasSubstr("between 1 and 1000"));
}

TEST_F(ControlAdminTest, DrainMakesEveryChunkDurableAndStopsWrites) {
  Start(true);
  TestPrompt p = PutPrompt(5, 6);
  std::vector<pb::DrainProgress> messages;
  ASSERT_TRUE(Drain(&messages).ok());
  ASSERT_GE(messages.size(), 2u);
  EXPECT_EQ(messages.front().chunks_total(), 6u);
  EXPECT_FALSE(messages.front().done());
  const pb::DrainProgress& last = messages.back();
  EXPECT_TRUE(last.done());
  EXPECT_TRUE(last.durable()) << last.detail();
  EXPECT_EQ(last.chunks_done(), 6u);
  EXPECT_EQ(last.chunks_failed(), 0u);
  EXPECT_EQ(last.bytes_done(), last.bytes_total());
  EXPECT_TRUE(engine_->VolatileChunks().empty());
  EXPECT_TRUE(engine_->writes_stopped());

  grpc::ClientContext context;
  pb::StatusResponse status;
  ASSERT_TRUE(stub_->Status(&context, pb::StatusRequest(), &status).ok());
  EXPECT_EQ(status.health(), pb::HEALTH_DRAINING);
  EXPECT_THAT(status.health_detail(), HasSubstr("drained"));
  TestPrompt q = MakeTestPrompt(TestChunkSpec(), 6, 1);
  EXPECT_EQ(engine_->Put(q.keys, q.Spans())[0].code(),
            absl::StatusCode::kUnavailable);

  // Again: nothing left to do.
  messages.clear();
  ASSERT_TRUE(Drain(&messages).ok());
  EXPECT_EQ(messages.back().chunks_total(), 0u);
  EXPECT_TRUE(messages.back().durable());
}

TEST_F(ControlAdminTest, DrainWithoutSsdOnlyStopsWrites) {
  Start(false);
  PutPrompt(7, 2);
  std::vector<pb::DrainProgress> messages;
  ASSERT_TRUE(Drain(&messages).ok());
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_TRUE(messages[0].done());
  EXPECT_FALSE(messages[0].durable());
  EXPECT_THAT(messages[0].detail(), HasSubstr("no SSD tier"));
  EXPECT_TRUE(engine_->writes_stopped());
  EXPECT_EQ(service_->health(), pb::HEALTH_DRAINING);
}

// Moving chunks to other owners is for nodes in cluster mode (the cluster
// tests run the real move); a standalone node refuses it and keeps taking
// writes.
TEST_F(ControlAdminTest, MoveToOwnersNeedsClusterMode) {
  Start(false);
  pb::DrainRequest request;
  request.set_move_to_owners(true);
  std::vector<pb::DrainProgress> messages;
  absl::Status s = Drain(&messages, kAdminToken, request);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("cluster mode"));
  EXPECT_TRUE(messages.empty());
  EXPECT_FALSE(engine_->writes_stopped());
  EXPECT_EQ(service_->health(), pb::HEALTH_SERVING);
}

// The Drain side of a cluster drain: replicas validated before anything
// changes, writes stopped, the mover's counts streamed, the outcome set.
TEST_F(ControlAdminTest, MoveToOwnersRunsTheNodesMover) {
  std::vector<int> asked;
  uint64_t fail = 0;
  move_chunks_ = [&](int replicas, pb::DrainProgress* progress,
                     const std::function<bool()>& report) {
    asked.push_back(replicas);
    progress->set_chunks_total(3);
    if (!report()) return absl::CancelledError("gone");
    progress->set_chunks_done(3 - fail);
    progress->set_chunks_failed(fail);
    return absl::OkStatus();
  };
  Start(false);
  pb::DrainRequest request;
  request.set_move_to_owners(true);
  request.set_replicas(9);
  std::vector<pb::DrainProgress> messages;
  EXPECT_EQ(Drain(&messages, kAdminToken, request).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(asked.empty());
  EXPECT_FALSE(engine_->writes_stopped());

  request.set_replicas(0);  // means 1
  ASSERT_TRUE(Drain(&messages, kAdminToken, request).ok());
  EXPECT_EQ(asked, std::vector<int>{1});
  ASSERT_FALSE(messages.empty());
  EXPECT_TRUE(messages.back().done());
  EXPECT_TRUE(messages.back().moved());
  EXPECT_EQ(messages.back().chunks_done(), 3u);
  EXPECT_TRUE(engine_->writes_stopped());
  EXPECT_EQ(service_->health(), pb::HEALTH_DRAINING);

  fail = 1;
  messages.clear();
  request.set_replicas(2);
  ASSERT_TRUE(Drain(&messages, kAdminToken, request).ok());
  EXPECT_EQ(asked.back(), 2);
  EXPECT_FALSE(messages.back().moved());
  EXPECT_THAT(messages.back().detail(),
              HasSubstr("1 chunks could not be moved"));
}

TEST_F(ControlAdminTest, HelloChecksTheTokenThenAsksTheDataPath) {
  Start(false);
  pb::HelloRequest request;
  request.set_protocol_version(1);
  pb::HelloResponse response;
  grpc::Status s = stub_->Hello(Context(kDataToken).get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("data path not enabled"));

  FakeHandshake handshake;
  service_->SetDataPath(&handshake);
  s = stub_->Hello(Context("wrong").get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  s = stub_->Hello(Context("").get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(handshake.calls, 0);

  s = stub_->Hello(Context(kDataToken).get(), request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.node_id(), "fake");
  EXPECT_EQ(handshake.calls, 1);
  EXPECT_FALSE(handshake.last_peer.empty());
  ASSERT_TRUE(
      stub_->Hello(Context(kAdminToken).get(), request, &response).ok());
  request.set_protocol_version(2);
  s = stub_->Hello(Context(kDataToken).get(), request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  service_->SetDataPath(nullptr);
}

}  // namespace
}  // namespace kvd
