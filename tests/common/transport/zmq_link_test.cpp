// ZeroMQ adapter tests with real CURVE sockets on 127.0.0.1 (port 0).
#include "common/transport/zmq_link.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

namespace outpost {
namespace {

class ZmqLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = std::move(ZmqContext::Create(1, 1024).value());
    zap_ = std::move(ZapHandler::Bind(*ctx_).value());
    server_keys_ = GenerateCurveKeys().value();
    zap_->AddDomain("sites", [this](const std::string& key) -> std::optional<std::string> {
      if (enrolled_.count(key)) return "site-" + key.substr(0, 4);
      return std::nullopt;
    });
    Listener::Options lo;
    lo.endpoint = "tcp://127.0.0.1:0";
    lo.zap_domain = "sites";
    lo.keys = server_keys_;
    lo.max_message_bytes = 4096;
    auto l = Listener::Bind(*ctx_, lo);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    listener_ = std::move(l).value();
  }
  std::unique_ptr<Connector> Client(const CurveKeys& keys) {
    Connector::Options co;
    co.endpoint = listener_->endpoint();
    co.server_public_z85 = server_keys_.public_z85;
    co.keys = keys;
    co.reconnect_ms = 50;
    auto c = Connector::Connect(*ctx_, co);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  // Polls everything for up to `ms`, until `done` says stop.
  void Pump(Connector* c, int ms, const std::function<bool()>& done) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until && !done()) {
      zmq_pollitem_t items[] = {{zap_->socket(), 0, ZMQ_POLLIN, 0},
                                {listener_->socket(), 0, ZMQ_POLLIN, 0},
                                {c->socket(), 0, ZMQ_POLLIN, 0},
                                {c->monitor(), 0, ZMQ_POLLIN, 0}};
      zmq_poll(items, 4, 20);
      zap_->Serve();
      listener_->Receive(&server_got_);
      c->Drain(&client_got_);
    }
  }
  bool ClientSaw(Connector::EventKind k) const {
    for (const auto& e : client_got_) {
      if (e.kind == k) return true;
    }
    return false;
  }

  std::unique_ptr<ZmqContext> ctx_;
  std::unique_ptr<ZapHandler> zap_;
  std::unique_ptr<Listener> listener_;
  CurveKeys server_keys_;
  std::set<std::string> enrolled_;
  std::vector<InboundFrame> server_got_;
  std::vector<Connector::Event> client_got_;
};

TEST_F(ZmqLinkTest, EnrolledKeyTalksBothWaysWithItsZapIdentity) {
  CurveKeys k = GenerateCurveKeys().value();
  enrolled_.insert(k.public_z85);
  auto c = Client(k);
  Pump(c.get(), 5000, [&] { return ClientSaw(Connector::EventKind::kConnected); });
  ASSERT_TRUE(ClientSaw(Connector::EventKind::kConnected));
  ASSERT_TRUE(c->Send("hello hub").ok());
  Pump(c.get(), 5000, [&] { return !server_got_.empty(); });
  ASSERT_EQ(server_got_.size(), 1u);
  EXPECT_EQ(server_got_[0].payload, "hello hub");
  EXPECT_EQ(server_got_[0].identity, "site-" + k.public_z85.substr(0, 4));
  ASSERT_TRUE(listener_->Send(server_got_[0].peer, "hello site").ok());
  Pump(c.get(), 5000, [&] { return ClientSaw(Connector::EventKind::kFrame); });
  ASSERT_TRUE(ClientSaw(Connector::EventKind::kFrame));
  EXPECT_EQ(zap_->accepted(), 1u);
}

TEST_F(ZmqLinkTest, UnknownKeyGetsNothingThrough) {
  auto c = Client(GenerateCurveKeys().value());
  Pump(c.get(), 5000, [&] { return ClientSaw(Connector::EventKind::kAuthFailed); });
  EXPECT_TRUE(ClientSaw(Connector::EventKind::kAuthFailed));
  EXPECT_FALSE(ClientSaw(Connector::EventKind::kConnected));
  c->Send("let me in").IgnoreError();  // IMMEDIATE: refused locally, never queued
  Pump(c.get(), 300, [] { return false; });
  EXPECT_TRUE(server_got_.empty());
  EXPECT_GE(zap_->refused(), 1u);
}

TEST_F(ZmqLinkTest, UnroutableSendIsAnErrorNotASilentDrop) {
  Status s = listener_->Send("no-such-peer", "x");
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

TEST_F(ZmqLinkTest, OversizedFrameDropsTheConnectionNotTheServer) {
  CurveKeys k = GenerateCurveKeys().value();
  enrolled_.insert(k.public_z85);
  auto c = Client(k);
  Pump(c.get(), 5000, [&] { return ClientSaw(Connector::EventKind::kConnected); });
  ASSERT_TRUE(c->Send(std::string(100000, 'x')).ok());
  Pump(c.get(), 2000, [&] { return ClientSaw(Connector::EventKind::kDisconnected); });
  EXPECT_TRUE(server_got_.empty());
  EXPECT_TRUE(ClientSaw(Connector::EventKind::kDisconnected));
  // It reconnects, and normal frames flow again.
  client_got_.clear();
  Pump(c.get(), 5000, [&] { return ClientSaw(Connector::EventKind::kConnected); });
  ASSERT_TRUE(c->Send("small").ok());
  Pump(c.get(), 5000, [&] { return !server_got_.empty(); });
  ASSERT_EQ(server_got_.size(), 1u);
  EXPECT_EQ(server_got_[0].payload, "small");
}

TEST(CurveKeysTest, CreatedOnceWithPrivateModeAndCheckedOnLoad) {
  auto dir = std::filesystem::temp_directory_path() / ("outpost_keys_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto k1 = LoadOrCreateKeys(dir.string(), "agent");
  ASSERT_TRUE(k1.ok()) << k1.status().ToString();
  struct stat st;
  ASSERT_EQ(stat((dir / "agent.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto k2 = LoadOrCreateKeys(dir.string(), "agent");
  ASSERT_TRUE(k2.ok());
  EXPECT_EQ(k1->public_z85, k2->public_z85);
  EXPECT_EQ(*ReadPublicKey((dir / "agent.pub").string()), k1->public_z85);
  EXPECT_EQ(*ReadPublicKey(k1->public_z85), k1->public_z85);
  EXPECT_FALSE(ReadPublicKey("not-a-key").ok());

  chmod((dir / "agent.key").c_str(), 0644);
  EXPECT_EQ(LoadOrCreateKeys(dir.string(), "agent").status().code(), Code::kFailedPrecondition);
  chmod((dir / "agent.key").c_str(), 0600);
  std::ofstream(dir / "agent.pub") << GenerateCurveKeys()->public_z85 << "\n";
  EXPECT_EQ(LoadOrCreateKeys(dir.string(), "agent").status().code(), Code::kCorruption);
  std::filesystem::remove(dir / "agent.pub");
  EXPECT_EQ(LoadOrCreateKeys(dir.string(), "agent").status().code(), Code::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace outpost
