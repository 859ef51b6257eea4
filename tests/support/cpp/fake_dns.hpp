// tests/support/cpp/fake_dns.hpp: a real DNS server for tests, on 127.0.0.1. Point a client at
// it with net::ClientOptions::dns_servers (or registry::ClientOptions::dns_servers).
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/encoding.hpp"

namespace sigil::test {

// A DNS server on 127.0.0.1 (RFC 1035 over UDP): `good.test`, `registry.corp.svc.test` and the
// names add()ed have the address 127.0.0.1, or the IPv4 addresses add() was given, in that order
// (and no IPv6 address); a name whose first label
// starts with "slow" never gets an answer, and one whose first label starts with "late" gets
// its answer 300 ms after the question; every other name does not exist (NXDOMAIN).
class FakeDns {
 public:
  FakeDns() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error("FakeDns: cannot bind");
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDns() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  FakeDns(const FakeDns&) = delete;
  FakeDns& operator=(const FakeDns&) = delete;

  std::string servers() const { return "127.0.0.1:" + std::to_string(port_); }
  void add(const std::string& name, std::vector<uint32_t> addresses = {INADDR_LOOPBACK}) {
    std::lock_guard lock(mu_);
    names_[ascii_lower(name)] = std::move(addresses);
  }
  int queries(const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = queries_.find(name);
    return it == queries_.end() ? 0 : it->second;
  }

 private:
  void serve() {
    using Clock = std::chrono::steady_clock;
    struct Due {
      Clock::time_point at;
      std::string answer;
      sockaddr_in to;
    };
    std::vector<Due> late;  // answers held back, in the order they are due
    while (!stop_) {
      const auto now = Clock::now();
      while (!late.empty() && late.front().at <= now) {
        const Due& d = late.front();
        ::sendto(fd_, d.answer.data(), d.answer.size(), 0, reinterpret_cast<const sockaddr*>(&d.to),
                 sizeof d.to);
        late.erase(late.begin());
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, late.empty() ? 50 : 5) <= 0) continue;
      unsigned char q[512];
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      const ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 12) continue;
      // The question's name, label by label, ending at the zero label; then QTYPE and QCLASS.
      std::string name;
      size_t at = 12;
      while (at < static_cast<size_t>(n) && q[at] != 0) {
        const size_t len = q[at];
        if (at + 1 + len > static_cast<size_t>(n)) break;
        if (!name.empty()) name += '.';
        name.append(reinterpret_cast<const char*>(q + at + 1), len);
        at += 1 + len;
      }
      if (at + 5 > static_cast<size_t>(n)) continue;
      const size_t question_end = at + 5;
      const unsigned qtype = (q[at + 1] << 8) | q[at + 2];
      name = ascii_lower(name);
      bool exists = false;
      std::vector<uint32_t> addresses;
      {
        std::lock_guard lock(mu_);
        ++queries_[name];
        if (auto it = names_.find(name); it != names_.end()) {
          exists = true;
          addresses = it->second;
        }
      }
      if (name.rfind("slow", 0) == 0) continue;  // never answered
      std::string r(reinterpret_cast<const char*>(q), question_end);
      r[2] = static_cast<char>(0x81);                  // QR, RD
      r[3] = static_cast<char>(exists ? 0x80 : 0x83);  // RA; rcode 0 or 3 (NXDOMAIN)
      r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;   // ANCOUNT, NSCOUNT, ARCOUNT
      if (exists && qtype == 1) {                      // A
        r[7] = static_cast<char>(addresses.size());
        for (const uint32_t a : addresses) {
          const unsigned char answer[] = {0xc0,
                                          0x0c,
                                          0,
                                          1,
                                          0,
                                          1,
                                          0,
                                          0,
                                          0,
                                          30,
                                          0,
                                          4,
                                          static_cast<unsigned char>(a >> 24),
                                          static_cast<unsigned char>(a >> 16),
                                          static_cast<unsigned char>(a >> 8),
                                          static_cast<unsigned char>(a)};
          r.append(reinterpret_cast<const char*>(answer), sizeof answer);
        }
      }
      if (name.rfind("late", 0) == 0) {
        late.push_back({Clock::now() + std::chrono::milliseconds(300), std::move(r), from});
        continue;
      }
      ::sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, int> queries_;
  std::map<std::string, std::vector<uint32_t>> names_{
      {"good.test", {INADDR_LOOPBACK}}, {"registry.corp.svc.test", {INADDR_LOOPBACK}}};
};

}  // namespace sigil::test
