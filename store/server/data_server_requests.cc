// The data server's request handling: put, get and lookup, from the first
// message to the response (the protocol is in store/proto/data_wire.h).
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "store/server/internal/data_server_impl.h"

namespace kvd {

absl::string_view DataServer::Impl::OpName(Op op) {
  switch (op) {
    case Op::kPut:
      return "put";
    case Op::kGet:
      return "get";
    case Op::kLookup:
      return "lookup";
  }
  return "unknown";
}

void DataServer::Impl::OnRequest(absl::Span<const uint8_t> header,
                                 IncomingPayload payload) {
  absl::StatusOr<wire::RequestHeader> h = wire::DecodeRequestHeader(header);
  std::optional<Session> session;
  if (h.ok()) session = FindSession(h->session, /*touch=*/true);
  if (!h.ok() || !session || shutting_down_) {
    // Nobody to answer: a malformed header or an unknown session is dropped.
    metrics_.unknown_session->Increment();
    if (!h.ok()) {
      spdlog::warn("dropped a data request: {}",
                   std::string(h.status().message()));
    }
    return;
  }
  if (payload.size() > (64u << 20)) {
    spdlog::warn("dropped a {}-byte request body", payload.size());
    EndSession(h->session, "oversized request body");
    return;
  }
  const auto key = std::make_pair(SessionKey(h->session), h->request_id);
  uint64_t& highest = highest_request_[key.first];
  highest = std::max(highest, h->request_id);
  bodies_pending_.insert(key);
  auto body = std::make_shared<std::vector<uint8_t>>(payload.size());
  std::move(payload).Receive(
      absl::MakeSpan(*body),
      [this, h = *h, s = *session, body, key](absl::Status status) {
        bodies_pending_.erase(key);
        if (!status.ok()) return;  // the session's failure handler cleans up
        OnBody(h, s, std::move(*body));
      });
}

void DataServer::Impl::OnBody(const wire::RequestHeader& h, const Session& s,
                              std::vector<uint8_t> body) {
  if (h.op == Op::kLookup) {
    absl::StatusOr<wire::LookupBody> lookup = wire::DecodeLookupBody(body);
    if (!lookup.ok()) {
      return SendResults(s.peer, h.request_id,
                         wire::ResultsBody{{wire::ResultOf(lookup.status())}});
    }
    return AnswerLookup(h, s, *std::move(lookup));
  }
  auto key = std::make_pair(SessionKey(h.session), h.request_id);
  if (requests_.contains(key)) {
    spdlog::warn("duplicate request id {} in one session", h.request_id);
    return EndSession(h.session, "duplicate request id");
  }
  auto request = std::make_unique<Request>();
  Request* r = request.get();
  r->session = h.session;
  r->peer = s.peer;
  r->protocol = s.protocol;
  r->id = h.request_id;
  r->op = h.op;
  r->start = absl::Now();
  r->deadline = r->start + options_.request_timeout;
  requests_[key] = std::move(request);

  absl::Status decoded;
  if (h.op == Op::kPut) {
    absl::StatusOr<wire::PutBody> put = wire::DecodePutBody(body);
    if (put.ok()) return StartPut(r, *std::move(put));
    decoded = put.status();
  } else {
    absl::StatusOr<wire::GetBody> get = wire::DecodeGetBody(body);
    if (get.ok()) return StartGet(r, *std::move(get));
    decoded = get.status();
  }
  FailRequest(r, decoded);
}

void DataServer::Impl::FailRequest(Request* r, const absl::Status& status) {
  // One result naming what is wrong with the request as a whole.
  r->items.resize(1);
  r->remaining = 1;
  Finish(r, 0, status);
}

absl::Status DataServer::Impl::CheckRkey(const Request& r,
                                         const std::string& rkey) {
  if (r.protocol == kvdepot::v1::DATA_PROTOCOL_RMA && rkey.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rkey is empty; an RMA session's ", OpName(r.op),
                     " names the client's registered buffer"));
  }
  return absl::OkStatus();
}

void DataServer::Impl::AnswerLookup(const wire::RequestHeader& h,
                                    const Session& s, wire::LookupBody body) {
  const absl::Time start = absl::Now();
  const size_t present = engine_->Lookup(body.keys);
  SendResults(s.peer, h.request_id,
              wire::ResultsBody{{wire::ResultOf(absl::OkStatus(), present)}});
  MetricsOf(Op::kLookup).ok->Increment(body.keys.size());
  MetricsOf(Op::kLookup)
      .seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
}

void DataServer::Impl::StartPut(Request* r, wire::PutBody body) {
  if (absl::Status s = CheckRkey(*r, body.rkey); !s.ok()) {
    return FailRequest(r, s);
  }
  r->rkey = std::move(body.rkey);
  r->items.resize(body.items.size());
  r->remaining = body.items.size();
  for (size_t i = 0; i < body.items.size(); ++i) {
    r->items[i].key = body.items[i].key;
    r->items[i].size = body.items[i].size;
    r->items[i].address = body.items[i].address;
  }
  if (r->remaining == 0) return Respond(r);
  for (size_t i = 0; i < r->items.size(); ++i) {
    pool_->Submit([this, r, i] {
      Item& item = r->items[i];
      absl::StatusOr<PutReservation> res =
          engine_->ReservePut(item.key, item.size);
      transport_->Post([this, r, i, res = std::move(res)]() mutable {
        Item& it = r->items[i];
        if (absl::IsAlreadyExists(res.status())) {
          return Finish(r, i, absl::OkStatus());  // deduplicated: no transfer
        }
        if (!res.ok()) return Finish(r, i, res.status());
        it.reservation = *std::move(res);
        Reserved(r, i);
      });
    });
  }
}

void DataServer::Impl::Reserved(Request* r, size_t i) {
  Item& item = r->items[i];
  if (r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    item.state = ItemState::kTransferring;
    transport_->Get(r->peer, item.reservation->dst, item.address, r->rkey,
                    [this, r, i](absl::Status s) { Received(r, i, s); });
    return;
  }
  // Active messages: the object comes (or came) as a kPutData payload.
  item.state = ItemState::kWaitingData;
  if (std::optional<IncomingPayload> early = TakeEarlyData(*r, i)) {
    ReceivePutData(r, i, *std::move(early));
  }
}

void DataServer::Impl::ReceivePutData(Request* r, size_t i,
                                      IncomingPayload payload) {
  Item& item = r->items[i];
  if (payload.size() != item.size) {
    return Finish(r, i,
                  absl::InvalidArgumentError(
                      absl::StrCat("put data is ", payload.size(),
                                   " bytes, the request said ", item.size)));
  }
  item.state = ItemState::kTransferring;
  std::move(payload).Receive(
      item.reservation->dst,
      [this, r, i](absl::Status s) { Received(r, i, s); });
}

void DataServer::Impl::OnPutData(absl::Span<const uint8_t> header,
                                 IncomingPayload payload) {
  absl::StatusOr<wire::DataHeader> h = wire::DecodeDataHeader(header);
  if (!h.ok() || !FindSession(h->session, /*touch=*/true) || shutting_down_) {
    metrics_.unknown_session->Increment();
    return;  // dropping the payload discards it
  }
  auto key = std::make_pair(SessionKey(h->session), h->request_id);
  auto it = requests_.find(key);
  if (it == requests_.end()) {
    // Client request ids only grow: an id at or below the highest seen is a
    // request already answered (its data deduplicated or refused).
    auto seen = highest_request_.find(key.first);
    if (seen != highest_request_.end() && h->request_id <= seen->second &&
        !bodies_pending_.contains(key)) {
      return;
    }
  }
  if (it == requests_.end() || it->second->items.size() <= h->index ||
      it->second->items[h->index].state == ItemState::kEngine) {
    // Before its request, or before its reservation: keep it for later, up
    // to a bound (a rendezvous payload holds a descriptor, not the bytes).
    if (early_payloads_ >= kMaxEarlyPayloads) {
      spdlog::warn("dropped put data for request {}: {} payloads wait already",
                   h->request_id, early_payloads_);
      return;
    }
    Early& early = early_[key];
    early.deadline = absl::Now() + options_.request_timeout;
    if (early.payloads.insert_or_assign(h->index, std::move(payload)).second) {
      ++early_payloads_;
    }
    return;
  }
  Request* r = it->second.get();
  Item& item = r->items[h->index];
  if (item.state != ItemState::kWaitingData) return;  // dedup, failed, dup
  ReceivePutData(r, h->index, std::move(payload));
}

void DataServer::Impl::Received(Request* r, size_t i, absl::Status status) {
  Item& item = r->items[i];
  if (!status.ok()) return Finish(r, i, status);
  item.state = ItemState::kEngine;
  pool_->Submit([this, r, i] {
    PutReservation res = *std::move(r->items[i].reservation);
    r->items[i].reservation.reset();
    absl::Status committed = engine_->CommitPut(std::move(res));
    transport_->Post([this, r, i, committed] {
      MetricsOf(Op::kPut).bytes->Increment(r->items[i].size);
      Finish(r, i, committed);
    });
  });
}

void DataServer::Impl::StartGet(Request* r, wire::GetBody body) {
  if (absl::Status s = CheckRkey(*r, body.rkey); !s.ok()) {
    return FailRequest(r, s);
  }
  r->rkey = std::move(body.rkey);
  r->items.resize(body.items.size());
  r->remaining = body.items.size();
  for (size_t i = 0; i < body.items.size(); ++i) {
    Item& item = r->items[i];
    item.key = body.items[i].key;
    item.whole_object = body.items[i].whole_object;
    item.selection = body.items[i].selection;
    item.address = body.items[i].address;
    item.capacity = body.items[i].capacity;
  }
  if (r->remaining == 0) return Respond(r);
  for (size_t i = 0; i < r->items.size(); ++i) {
    pool_->Submit([this, r, i] {
      Item& item = r->items[i];
      absl::StatusOr<PinnedChunk> pinned = engine_->PinChunk(item.key);
      absl::StatusOr<std::vector<ByteRange>> ranges;
      if (pinned.ok()) {
        ranges = item.whole_object
                     ? std::vector<ByteRange>{{0, pinned->bytes.size()}}
                     : SelectByteRanges(pinned->header, item.selection);
      }
      transport_->Post([this, r, i, pinned = std::move(pinned),
                        ranges = std::move(ranges)]() mutable {
        if (!pinned.ok()) return Finish(r, i, pinned.status());
        Item& it = r->items[i];
        it.pinned = *std::move(pinned);
        if (!ranges.ok()) return Finish(r, i, ranges.status());
        it.ranges = *std::move(ranges);
        Pinned(r, i);
      });
    });
  }
}

void DataServer::Impl::Pinned(Request* r, size_t i) {
  Item& item = r->items[i];
  uint64_t total = 0;
  for (const ByteRange& range : item.ranges) total += range.length;
  if (total > item.capacity) {
    return Finish(r, i,
                  absl::InvalidArgumentError(absl::StrCat(
                      "get.capacity=", item.capacity, " is smaller than the ",
                      total, " bytes selected")));
  }
  item.size = total;
  item.state = ItemState::kTransferring;
  const absl::Span<const uint8_t> src = item.pinned->bytes;
  if (r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    item.transfers = static_cast<int>(item.ranges.size());
    uint64_t offset = 0;
    for (const ByteRange& range : item.ranges) {
      transport_->Put(r->peer, src.subspan(range.offset, range.length),
                      item.address + offset, r->rkey,
                      [this, r, i](absl::Status s) {
                        Item& it = r->items[i];
                        if (!s.ok() && it.transfer_status.ok()) {
                          it.transfer_status = s;
                        }
                        if (--it.transfers == 0) {
                          Finish(r, i, it.transfer_status, it.size);
                        }
                      });
      offset += range.length;
    }
    return;
  }
  absl::Span<const uint8_t> payload = src;
  if (!item.whole_object) {
    item.gathered.resize(total);
    uint64_t offset = 0;
    for (const ByteRange& range : item.ranges) {
      std::memcpy(item.gathered.data() + offset, src.data() + range.offset,
                  range.length);
      offset += range.length;
    }
    payload = item.gathered;
  }
  transport_->Send(
      r->peer, wire::kGetData,
      wire::Encode(wire::DataHeader{{}, r->id, static_cast<uint32_t>(i)}),
      payload,
      [this, r, i](absl::Status s) { Finish(r, i, s, r->items[i].size); });
}

void DataServer::Impl::Finish(Request* r, size_t i, const absl::Status& status,
                              uint64_t value) {
  Item& item = r->items[i];
  if (item.state == ItemState::kDone) return;
  item.state = ItemState::kDone;
  item.result = wire::ResultOf(status, value);
  if (item.reservation) {
    engine_->AbortPut(*std::move(item.reservation));
    item.reservation.reset();
  }
  if (item.pinned) {
    engine_->UnpinChunk(*item.pinned);
    item.pinned.reset();
    if (status.ok()) MetricsOf(Op::kGet).bytes->Increment(item.size);
  }
  item.gathered = {};
  // Data that came for an item finished without it (deduplicated, failed) is
  // released now, which completes the client's send.
  if (r->op == Op::kPut) TakeEarlyData(*r, i);
  if (--r->remaining > 0) return;
  if (r->op == Op::kGet && r->protocol == kvdepot::v1::DATA_PROTOCOL_RMA) {
    // Flush before ack: the writes must be remotely complete.
    transport_->Flush(r->peer, [this, r](absl::Status s) {
      if (!s.ok()) {
        for (Item& it : r->items) {
          if (it.result.code == absl::StatusCode::kOk) {
            it.result = wire::ResultOf(s);
          }
        }
      }
      Respond(r);
    });
    return;
  }
  Respond(r);
}

std::optional<IncomingPayload> DataServer::Impl::TakeEarlyData(const Request& r,
                                                               size_t i) {
  auto e = early_.find(std::make_pair(SessionKey(r.session), r.id));
  if (e == early_.end()) return std::nullopt;
  auto p = e->second.payloads.find(static_cast<uint32_t>(i));
  if (p == e->second.payloads.end()) return std::nullopt;
  IncomingPayload payload = std::move(p->second);
  e->second.payloads.erase(p);
  --early_payloads_;
  if (e->second.payloads.empty()) early_.erase(e);
  return payload;
}

void DataServer::Impl::Respond(Request* r) {
  wire::ResultsBody results;
  results.results.reserve(r->items.size());
  for (const Item& item : r->items) {
    results.results.push_back(item.result);
    CountResult(r->op, item.result.code);
  }
  SendResults(r->peer, r->id, results);
  MetricsOf(r->op).seconds->Observe(
      absl::ToDoubleSeconds(absl::Now() - r->start));
  requests_.erase(std::make_pair(SessionKey(r->session), r->id));
}

void DataServer::Impl::SendResults(PeerId peer, uint64_t request_id,
                                   const wire::ResultsBody& results) {
  auto body = std::make_shared<std::string>(wire::Encode(results));
  transport_->Send(
      peer, wire::kResponse, wire::Encode(wire::ResponseHeader{request_id}),
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(body->data()),
                          body->size()),
      [body](absl::Status) {});  // a lost answer is the client's timeout
}

}  // namespace kvd
