#include "store/proto/data_wire.h"

#include <fstream>

#include "gtest/gtest.h"

namespace kvd::wire {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

ChunkKey KeyOf(uint8_t b) {
  ChunkKey k;
  k.bytes.fill(b);
  return k;
}

TEST(DataWireTest, HeadersRoundTrip) {
  RequestHeader h;
  h.session.fill(7);
  h.request_id = 42;
  h.op = Op::kGet;
  auto back = DecodeRequestHeader(Bytes(Encode(h)));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->session, h.session);
  EXPECT_EQ(back->request_id, 42u);
  EXPECT_EQ(back->op, Op::kGet);

  DataHeader d{h.session, 9, 3};
  auto dback = DecodeDataHeader(Bytes(Encode(d)));
  ASSERT_TRUE(dback.ok());
  EXPECT_EQ(dback->index, 3u);
  EXPECT_EQ(DecodeResponseHeader(Bytes(Encode(ResponseHeader{5})))->request_id,
            5u);
}

TEST(DataWireTest, BodiesRoundTrip) {
  PutBody put{"rkey-bytes", {{KeyOf(1), 100, 0x1000}, {KeyOf(2), 200, 0}}};
  auto p = DecodePutBody(Bytes(Encode(put)));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->rkey, "rkey-bytes");
  ASSERT_EQ(p->items.size(), 2u);
  EXPECT_EQ(p->items[1].key, KeyOf(2));
  EXPECT_EQ(p->items[0].address, 0x1000u);

  GetItem gi;
  gi.key = KeyOf(3);
  gi.whole_object = false;
  gi.selection = {1, 3, 0, 2};
  gi.capacity = 4096;
  auto g = DecodeGetBody(Bytes(Encode(GetBody{"", {gi}})));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->items[0].whole_object);
  EXPECT_EQ(g->items[0].selection.layer_end, 3u);
  EXPECT_FALSE(g->items[0].selection.with_header);
  gi.selection.with_header = true;
  g = DecodeGetBody(Bytes(Encode(GetBody{"", {gi}})));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->items[0].whole_object);
  EXPECT_TRUE(g->items[0].selection.with_header);
  gi.selection.ranges = {{100, 16}, {400, 32}};
  g = DecodeGetBody(Bytes(Encode(GetBody{"", {gi}})));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->items[0].selection.ranges, gi.selection.ranges);
  EXPECT_EQ(g->items[0].capacity, 4096u);

  auto l = DecodeLookupBody(Bytes(Encode(LookupBody{{KeyOf(4), KeyOf(5)}})));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->keys[1], KeyOf(5));

  ResultsBody r{{ResultOf(absl::OkStatus(), 77),
                 ResultOf(absl::NotFoundError("chunk x is not stored"))}};
  auto rb = DecodeResultsBody(Bytes(Encode(r)));
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->results[0].value, 77u);
  EXPECT_TRUE(absl::IsNotFound(StatusOf(rb->results[1])));
  EXPECT_EQ(StatusOf(rb->results[1]).message(), "chunk x is not stored");
}

TEST(DataWireTest, BadInputNamesTheField) {
  RequestHeader h;
  std::string bytes = Encode(h);
  bytes[4] = 9;  // protocol version
  EXPECT_NE(DecodeRequestHeader(Bytes(bytes))
                .status()
                .message()
                .find("protocol_version 9"),
            std::string::npos);
  bytes = Encode(h);
  bytes.back() = 7;  // op
  EXPECT_TRUE(
      absl::IsInvalidArgument(DecodeRequestHeader(Bytes(bytes)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      DecodeRequestHeader(Bytes(Encode(h) + "x")).status()));

  // A count larger than the bound, or than the bytes that follow, is refused
  // before anything is allocated.
  std::string lookup = Encode(LookupBody{{KeyOf(1)}});
  lookup[0] = static_cast<char>(0xff);
  lookup[1] = static_cast<char>(0xff);
  auto l = DecodeLookupBody(Bytes(lookup));
  EXPECT_NE(l.status().message().find("lookup.count=65535 exceeds"),
            std::string::npos)
      << l.status();
  lookup = Encode(LookupBody{{KeyOf(1)}});
  lookup[0] = 2;
  EXPECT_NE(
      DecodeLookupBody(Bytes(lookup)).status().message().find("do not fit"),
      std::string::npos);

  EXPECT_NE(DecodePutBody(Bytes(Encode(PutBody{"", {{KeyOf(1), 0, 0}}})))
                .status()
                .message()
                .find("put.size=0"),
            std::string::npos);
  GetItem empty;
  empty.selection = {2, 2, 0, 1};
  empty.capacity = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(
      DecodeGetBody(Bytes(Encode(GetBody{"", {empty}}))).status()));
  PutBody big_rkey{std::string(kMaxRkeyBytes + 1, 'k'), {}};
  EXPECT_NE(
      DecodePutBody(Bytes(Encode(big_rkey))).status().message().find("rkey"),
      std::string::npos);
}

// Writes the fuzz seed corpus when KVD_WRITE_CORPUS names a directory.
TEST(DataWireTest, SeedCorpus) {
  const char* dir = std::getenv("KVD_WRITE_CORPUS");
  if (dir == nullptr) GTEST_SKIP() << "set KVD_WRITE_CORPUS to write seeds";
  RequestHeader h;
  h.session.fill(1);
  GetItem gi;
  gi.key = KeyOf(3);
  gi.capacity = 64;
  const std::string seeds[] = {
      Encode(h),
      Encode(DataHeader{h.session, 1, 2}),
      Encode(ResponseHeader{3}),
      Encode(PutBody{"rk", {{KeyOf(1), 100, 8}}}),
      Encode(GetBody{"rk", {gi}}),
      Encode(LookupBody{{KeyOf(4), KeyOf(5)}}),
      Encode(ResultsBody{{ResultOf(absl::NotFoundError("miss"))}}),
  };
  for (int i = 0; i < 7; ++i) {
    std::ofstream out(std::string(dir) + "/seed" + std::to_string(i),
                      std::ios::binary);
    out << static_cast<char>(i) << seeds[i];
  }
  // Get bodies with a header-and-layers selection and explicit ranges
  // (decoder 4, as seed4).
  GetItem header = gi, ranges = gi;
  header.whole_object = ranges.whole_object = false;
  header.selection = {.layer_end = 2, .with_header = true};
  ranges.selection.ranges = {{0, 16}, {64, 8}};
  std::ofstream(std::string(dir) + "/seed7", std::ios::binary)
      << static_cast<char>(4) << Encode(GetBody{"", {header, ranges}});
}

}  // namespace
}  // namespace kvd::wire
