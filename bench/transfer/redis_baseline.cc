// RedisBaseline (baselines.h): a private redis-server and hiredis clients.
#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <latch>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/transfer/baselines.h"
#include "core/status.h"

namespace kvd::bench {
namespace {

constexpr int kPortAttempts = 3;
constexpr uint64_t kDefaultProtoMaxBulkLen = 512ull << 20;
constexpr uint64_t kDefaultQueryBufferLimit = 1ull << 30;

struct RedisContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using RedisContextPtr = std::unique_ptr<redisContext, RedisContextDeleter>;
struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

// The one adapter from hiredis errors to a Status: a missing reply is a
// connection-level failure (kUnavailable: retry), an error reply names the
// command's failure (kInternal).
absl::Status RedisStatus(const redisContext* c, const redisReply* reply,
                         absl::string_view what) {
  if (c == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(what, ": cannot allocate a redis context"));
  }
  if (reply == nullptr || c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": ", c->err != 0 ? c->errstr : "no reply"));
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(
        absl::StrCat(what, ": ", absl::string_view(reply->str, reply->len)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisContextPtr> Connect(RedisTransport transport, int port,
                                        const std::string& unix_socket,
                                        absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  RedisContextPtr c(transport == RedisTransport::kTcp
                        ? redisConnectWithTimeout("127.0.0.1", port, tv)
                        : redisConnectUnixWithTimeout(unix_socket.c_str(), tv));
  const std::string what = transport == RedisTransport::kTcp
                               ? absl::StrCat("connect(127.0.0.1:", port, ")")
                               : absl::StrCat("connect(", unix_socket, ")");
  if (c == nullptr || c->err != 0) {
    return RedisStatus(c.get(), nullptr, what);
  }
  if (redisSetTimeout(c.get(), tv) != REDIS_OK) {
    return RedisStatus(c.get(), nullptr, absl::StrCat(what, ": set timeout"));
  }
  return c;
}

// Runs one command given as binary-safe arguments.
absl::StatusOr<RedisReplyPtr> Command(
    redisContext* c, std::initializer_list<absl::string_view> args) {
  std::vector<const char*> argv;
  std::vector<size_t> argvlen;
  for (absl::string_view a : args) {
    argv.push_back(a.data());
    argvlen.push_back(a.size());
  }
  RedisReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
      c, static_cast<int>(argv.size()), argv.data(), argvlen.data())));
  KVD_RETURN_IF_ERROR(RedisStatus(c, reply.get(), *args.begin()));
  return reply;
}

absl::Status Ping(RedisTransport transport, int port,
                  const std::string& unix_socket, absl::Duration timeout) {
  KVD_ASSIGN_OR_RETURN(RedisContextPtr c,
                       Connect(transport, port, unix_socket, timeout));
  KVD_ASSIGN_OR_RETURN(RedisReplyPtr reply, Command(c.get(), {"PING"}));
  if (reply->type != REDIS_REPLY_STATUS ||
      absl::string_view(reply->str, reply->len) != "PONG") {
    return absl::UnavailableError("PING did not answer PONG");
  }
  return absl::OkStatus();
}

// splitmix64 bytes, so every thread's values differ.
void FillRandom(std::string& s, uint64_t seed) {
  uint64_t x = seed;
  for (size_t i = 0; i + 8 <= s.size(); i += 8) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(&s[i], &z, 8);
  }
}

// Makes value `index` distinct: its index in the first and last 8 bytes.
void TagValue(std::string& v, uint64_t index) {
  const size_t n = std::min<size_t>(8, v.size());
  std::memcpy(v.data(), &index, n);
  std::memcpy(v.data() + v.size() - n, &index, n);
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

absl::string_view RedisTransportName(RedisTransport transport) {
  return transport == RedisTransport::kTcp ? "tcp" : "unix";
}

struct RedisBaseline::Impl {
  RedisServerOptions options;
  std::unique_ptr<TempDir> dir;
  std::unique_ptr<Subprocess> server;
  int port = 0;
  std::string unix_socket;
  bool shut_down = false;
};

RedisBaseline::RedisBaseline(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)),
      port_(impl_->port),
      unix_socket_(impl_->unix_socket) {}

RedisBaseline::~RedisBaseline() { Shutdown().IgnoreError(); }

absl::StatusOr<std::unique_ptr<RedisBaseline>> RedisBaseline::Start(
    RedisServerOptions options) {
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.binary, " is not executable (install Debian's redis-server)"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  KVD_ASSIGN_OR_RETURN(impl->dir, TempDir::Create("kvd-redis-"));
  impl->unix_socket = impl->dir->path() + "/redis.sock";
  const uint64_t bulk =
      std::max(kDefaultProtoMaxBulkLen, 2 * options.max_value_bytes);
  const uint64_t query =
      std::max(kDefaultQueryBufferLimit, 4 * options.max_value_bytes);

  absl::Status last;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    KVD_ASSIGN_OR_RETURN(impl->port, PickFreePort());
    Subprocess::Options so;
    so.argv = {options.binary,
               "--port",
               absl::StrCat(impl->port),
               "--bind",
               "127.0.0.1",
               "--unixsocket",
               impl->unix_socket,
               "--unixsocketperm",
               "700",
               "--dir",
               impl->dir->path(),
               "--save",
               "",
               "--appendonly",
               "no",
               "--daemonize",
               "no",
               "--logfile",
               "",
               "--loglevel",
               "warning",
               "--maxmemory",
               "0",
               "--proto-max-bulk-len",
               absl::StrCat(bulk),
               "--client-query-buffer-limit",
               absl::StrCat(query)};
    so.output_path = impl->dir->path() + "/redis.log";
    KVD_ASSIGN_OR_RETURN(impl->server, Subprocess::Start(so));
    const absl::Time deadline = absl::Now() + options.start_timeout;
    while (true) {
      if (!impl->server->Running()) {
        const std::string out = impl->server->Output();
        last = absl::UnavailableError(absl::StrCat(
            "redis-server exited with status ", impl->server->Kill(),
            "; log tail:\n", TailLines(out, 6)));
        if (absl::StrContains(out, "Address already in use")) break;
        return last;
      }
      const absl::Duration t = absl::Milliseconds(500);
      if (Ping(RedisTransport::kUnix, impl->port, impl->unix_socket, t).ok() &&
          Ping(RedisTransport::kTcp, impl->port, impl->unix_socket, t).ok()) {
        return std::unique_ptr<RedisBaseline>(
            new RedisBaseline(std::move(impl)));
      }
      if (absl::Now() >= deadline) {
        impl->server->Kill();
        return absl::UnavailableError(absl::StrCat(
            "redis-server did not answer PING within ",
            absl::FormatDuration(options.start_timeout), "; log tail:\n",
            TailLines(impl->server->Output(), 6)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  return last;
}

absl::Status RedisBaseline::Shutdown() {
  if (impl_->shut_down) return absl::OkStatus();
  impl_->shut_down = true;
  absl::Status status;
  absl::StatusOr<RedisContextPtr> c = Connect(
      RedisTransport::kUnix, impl_->port, impl_->unix_socket, absl::Seconds(2));
  if (c.ok()) {
    // The server closes the connection instead of replying.
    freeReplyObject(redisCommand(c->get(), "SHUTDOWN NOSAVE"));
  }
  absl::StatusOr<int> rc = impl_->server->Wait(absl::Seconds(5));
  if (!rc.ok()) {
    status = absl::UnavailableError(
        "redis-server ignored SHUTDOWN NOSAVE for 5s; killed");
    impl_->server->Kill();
  } else if (*rc != 0) {
    status = absl::InternalError(
        absl::StrCat("redis-server exited with status ", *rc, "; log tail:\n",
                     TailLines(impl_->server->Output(), 6)));
  }
  impl_->server->Kill();  // reaps; also ends anything left in its group
  return status;
}

absl::StatusOr<RedisResult> RedisBaseline::Run(RedisTransport transport,
                                               const RedisLoad& load) {
  if (impl_->shut_down) {
    return absl::FailedPreconditionError("redis-server was shut down");
  }
  if (load.value_bytes == 0 ||
      load.value_bytes > impl_->options.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "value_bytes=", load.value_bytes, " must be in [1, max_value_bytes=",
        impl_->options.max_value_bytes, "]"));
  }
  if (load.threads == 0 || load.values < load.threads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "values=", load.values, " must be >= threads=", load.threads, " >= 1"));
  }
  const uint32_t t_count = load.threads;
  std::vector<RedisContextPtr> conns;
  for (uint32_t t = 0; t < t_count; ++t) {
    KVD_ASSIGN_OR_RETURN(RedisContextPtr c,
                         Connect(transport, impl_->port, impl_->unix_socket,
                                 impl_->options.command_timeout));
    conns.push_back(std::move(c));
  }
  KVD_RETURN_IF_ERROR(Command(conns[0].get(), {"FLUSHALL"}).status());

  // Thread t owns keys t, t + T, t + 2T, ... and one value buffer, tagged
  // per key before each SET.
  std::vector<std::string> values(t_count);
  for (uint32_t t = 0; t < t_count; ++t) {
    values[t].resize(load.value_bytes);
    FillRandom(values[t], 0x6b76647265646973ull + t);
  }
  auto key_of = [](uint64_t i) { return absl::StrCat("kvd:chunk:", i); };

  struct ThreadState {
    absl::Status status;
    std::vector<double> latency_us;
    uint64_t bytes = 0;
  };

  // Runs `op(t, i, state)` for each of thread t's keys on T threads at once;
  // returns the phase's wall seconds.
  auto run_phase = [&](auto op, std::vector<ThreadState>& states) -> double {
    std::latch ready(t_count + 1);
    std::atomic<bool> go{false};
    std::vector<absl::Time> end(t_count);
    std::vector<std::thread> threads;
    for (uint32_t t = 0; t < t_count; ++t) {
      threads.emplace_back([&, t] {
        ready.count_down();
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (uint64_t i = t; i < load.values; i += t_count) {
          const absl::Time t0 = absl::Now();
          absl::Status s = op(t, i, states[t]);
          states[t].latency_us.push_back(
              absl::ToDoubleMicroseconds(absl::Now() - t0));
          if (!s.ok()) {
            states[t].status = s;
            break;
          }
        }
        end[t] = absl::Now();
      });
    }
    ready.arrive_and_wait();
    const absl::Time start = absl::Now();
    go.store(true, std::memory_order_release);
    for (auto& th : threads) th.join();
    return absl::ToDoubleSeconds(*std::max_element(end.begin(), end.end()) -
                                 start);
  };

  auto summarize = [&](std::vector<ThreadState>& states, double seconds,
                       RedisPhaseResult& out) -> absl::Status {
    std::vector<double> lat;
    for (ThreadState& s : states) {
      KVD_RETURN_IF_ERROR(s.status);
      out.bytes += s.bytes;
      lat.insert(lat.end(), s.latency_us.begin(), s.latency_us.end());
    }
    out.ops = lat.size();
    out.seconds = seconds;
    out.bytes_per_s = seconds > 0 ? out.bytes / seconds : 0;
    out.latency_p50_us = Percentile(lat, 0.50);
    out.latency_p99_us = Percentile(lat, 0.99);
    return absl::OkStatus();
  };

  RedisResult result;
  result.transport = transport;
  result.load = load;

  std::vector<ThreadState> set_states(t_count);
  const double set_s = run_phase(
      [&](uint32_t t, uint64_t i, ThreadState& st) -> absl::Status {
        TagValue(values[t], i);
        const std::string key = key_of(i);
        KVD_RETURN_IF_ERROR(
            Command(conns[t].get(), {"SET", key, values[t]}).status());
        st.bytes += load.value_bytes;
        return absl::OkStatus();
      },
      set_states);
  KVD_RETURN_IF_ERROR(summarize(set_states, set_s, result.set));

  std::vector<ThreadState> get_states(t_count);
  const double get_s = run_phase(
      [&](uint32_t t, uint64_t i, ThreadState& st) -> absl::Status {
        const std::string key = key_of(i);
        KVD_ASSIGN_OR_RETURN(RedisReplyPtr reply,
                             Command(conns[t].get(), {"GET", key}));
        if (reply->type != REDIS_REPLY_STRING) {
          return absl::DataLossError(absl::StrCat(
              "GET ", key, ": reply type ", reply->type, ", want a string"));
        }
        // The timed pass checks the length and the per-key tags; the
        // untimed pass below checks every byte.
        TagValue(values[t], i);
        const size_t tag = std::min<size_t>(8, load.value_bytes);
        if (static_cast<uint64_t>(reply->len) != load.value_bytes ||
            std::memcmp(reply->str, values[t].data(), tag) != 0 ||
            std::memcmp(reply->str + reply->len - tag,
                        values[t].data() + load.value_bytes - tag, tag) != 0) {
          return absl::DataLossError(absl::StrCat(
              "GET ", key, " returned ", reply->len, " bytes that are not the ",
              load.value_bytes, " set"));
        }
        st.bytes += reply->len;
        return absl::OkStatus();
      },
      get_states);
  KVD_RETURN_IF_ERROR(summarize(get_states, get_s, result.get));

  // Untimed: GET everything again and compare every byte with what was set.
  std::vector<ThreadState> check_states(t_count);
  run_phase(
      [&](uint32_t t, uint64_t i, ThreadState&) -> absl::Status {
        const std::string key = key_of(i);
        KVD_ASSIGN_OR_RETURN(RedisReplyPtr reply,
                             Command(conns[t].get(), {"GET", key}));
        TagValue(values[t], i);
        if (reply->type != REDIS_REPLY_STRING ||
            static_cast<uint64_t>(reply->len) != load.value_bytes ||
            std::memcmp(reply->str, values[t].data(), load.value_bytes) != 0) {
          return absl::DataLossError(
              absl::StrCat("GET ", key, " returned bytes that differ from the ",
                           load.value_bytes, " set"));
        }
        return absl::OkStatus();
      },
      check_states);
  for (const ThreadState& st : check_states) KVD_RETURN_IF_ERROR(st.status);
  KVD_RETURN_IF_ERROR(Command(conns[0].get(), {"FLUSHALL"}).status());
  return result;
}

}  // namespace kvd::bench
