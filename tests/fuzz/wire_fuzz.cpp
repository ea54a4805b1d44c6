// outpost-fuzz-wire: a seeded mutation fuzzer for everything Outpost decodes from the
// network or from a peer's log — wire messages, hub commands and site events.
//
// It starts from valid encodings and applies random mutations (bit flips, byte edits,
// truncation, splices, and msgpack headers that claim huge lengths or deep nesting).
// Every input must decode to a value or to an error; a throw, a crash (run it under
// ASan/UBSan) or an unbounded allocation is a bug. A decoded Message must survive a
// re-encode unchanged. The seed is printed, so any failure replays exactly:
//   outpost-fuzz-wire --seed S --iterations N
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/protocol/command.h"
#include "common/protocol/event.h"
#include "common/random.h"
#include "common/protocol/wire.h"

namespace outpost {
namespace {

std::vector<std::string> Corpus() {
  std::vector<std::string> c;
  Message m;
  m.t = static_cast<uint8_t>(MsgType::kHello);
  m.site = "gateway-17";
  m.incarnation = 0x1234567890abcdefULL;
  m.up_head = 99;
  m.down_applied = 3;
  c.push_back(EncodeMessage(m));
  Message b;
  b.t = static_cast<uint8_t>(MsgType::kBatch);
  b.first_seq = 7;
  b.entries = {"abc", std::string(300, 'x'), ""};
  c.push_back(EncodeMessage(b));
  Message a;
  a.t = static_cast<uint8_t>(MsgType::kAck);
  a.seq = 12;
  a.credit = 8;
  c.push_back(EncodeMessage(a));
  Message e;
  e.t = static_cast<uint8_t>(MsgType::kError);
  e.message = "refused";
  c.push_back(EncodeMessage(e));
  Command cmd;
  cmd.type = static_cast<uint8_t>(CommandType::kStartRun);
  cmd.run = "site-01ABC";
  cmd.source = "name: x\ntasks:\n  - id: a\n    run: [true]\n";
  cmd.params = {{"k", "v"}, {"n", "1"}};
  c.push_back(EncodeCommand(cmd));
  Event ev;
  ev.type = static_cast<uint8_t>(EventType::kRunCreated);
  ev.run = "r";
  ev.tasks = {"a", "b"};
  ev.params = {{"x", "y"}};
  c.push_back(Encode(ev));
  return c;
}

// msgpack headers that claim much more than follows.
const std::vector<std::string> kHostile = {
    std::string("\xdd\xff\xff\xff\xff", 5),  // array32 of 4G elements
    std::string("\xdf\xff\xff\xff\xff", 5),  // map32 of 4G pairs
    std::string("\xdb\xff\xff\xff\xff", 5),  // str32 of 4 GiB
    std::string("\xc6\xff\xff\xff\xff", 5),  // bin32 of 4 GiB
    std::string("\xc9\xff\xff\xff\xff\x01", 6),  // ext32
    std::string("\xdc\xff\xff", 3),          // array16
    std::string("\xde\xff\xff", 3),          // map16
    std::string(64, '\x91'),                 // deep nesting
    std::string(64, '\x81'),
};

// Uniform in [0, n); 0 when n is 0.
uint64_t Below(Rng* rng, uint64_t n) { return n == 0 ? 0 : rng->Uniform(n - 1); }

std::string Mutate(std::string s, const std::vector<std::string>& corpus, Rng* rng) {
  const int n = 1 + static_cast<int>(Below(rng, 4));
  for (int i = 0; i < n; ++i) {
    const size_t pos = s.empty() ? 0 : Below(rng, s.size());
    switch (Below(rng, 8)) {
      case 0:
        if (!s.empty()) s[pos] = static_cast<char>(s[pos] ^ (1 << Below(rng, 8)));
        break;
      case 1:
        if (!s.empty()) s[pos] = static_cast<char>(Below(rng, 256));
        break;
      case 2:
        s.insert(pos, 1, static_cast<char>(Below(rng, 256)));
        break;
      case 3:
        if (!s.empty()) s.erase(pos, 1 + Below(rng, std::min<size_t>(8, s.size() - pos)));
        break;
      case 4:
        s.resize(Below(rng, s.size() + 1));
        break;
      case 5: {
        const std::string& h = kHostile[Below(rng, kHostile.size())];
        s.insert(pos, h);
        break;
      }
      case 6: {
        const std::string& other = corpus[Below(rng, corpus.size())];
        const size_t from = other.empty() ? 0 : Below(rng, other.size());
        s.insert(pos, other.substr(from, Below(rng, 64)));
        break;
      }
      case 7:
        s += s.substr(0, Below(rng, s.size() + 1));  // trailing bytes
        break;
    }
  }
  return s;
}

int Main(int argc, char** argv) {
  uint64_t seed = SeedFromOs();
  long seconds = 10;
  long iterations = -1;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], nullptr, 10);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = strtol(argv[++i], nullptr, 10);
    else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = strtol(argv[++i], nullptr, 10);
    else {
      fprintf(stderr, "usage: outpost-fuzz-wire [--seed N] [--seconds S | --iterations N]\n");
      return 2;
    }
  }
  printf("outpost-fuzz-wire seed=%llu (replay: outpost-fuzz-wire --seed %llu --iterations N)\n",
         static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  fflush(stdout);
  Rng rng(seed);
  const auto corpus = Corpus();
  const auto start = std::chrono::steady_clock::now();
  uint64_t done = 0, decoded = 0, refused = 0;
  while (true) {
    if (iterations >= 0 ? static_cast<long>(done) >= iterations
                        : std::chrono::steady_clock::now() - start >= std::chrono::seconds(seconds)) {
      break;
    }
    std::string input = Mutate(corpus[Below(&rng, corpus.size())], corpus, &rng);
    Message m;
    Status s = DecodeMessage(input, &m);
    if (s.ok()) {
      ++decoded;
      Message again;
      if (!DecodeMessage(EncodeMessage(m), &again).ok() ||
          EncodeMessage(again) != EncodeMessage(m)) {
        fprintf(stderr, "FAIL seed=%llu iteration=%llu: decoded message does not round-trip\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(done));
        return 1;
      }
    } else {
      ++refused;
    }
    Command c;
    DecodeCommand(input, &c).IgnoreError();
    Event e;
    Decode(input, &e).IgnoreError();
    ++done;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("iterations=%llu decoded=%llu refused=%llu seconds=%.1f rate=%.0f/s result=ok\n",
         static_cast<unsigned long long>(done), static_cast<unsigned long long>(decoded),
         static_cast<unsigned long long>(refused), secs, done / std::max(secs, 1e-9));
  return 0;
}

}  // namespace
}  // namespace outpost

int main(int argc, char** argv) { return outpost::Main(argc, argv); }
