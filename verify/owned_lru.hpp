// verify/owned_lru.hpp: a bounded LRU map whose entries each have an owner, where an owner
// holding more than its share is the first to make room.
//
// Role: the store under the verdict cache and the last-known-good store. Their entries are
// made by admissions, and the owner is the admission's namespace: a tenant whose pods name
// thousands of distinct images (each one a verification, and each a verdict) would otherwise
// push every other namespace's verdicts out, and with them the cluster's cache hits and its
// last-known-good answers in a registry outage. Below full, anyone may fill the map (a cluster
// with one busy namespace uses all of it). When full, a new entry's room is made by, in order:
//   1. its own owner's least recently used entry, when that owner holds its share or more;
//   2. else the least recently used entry among the owners holding more than their share;
//   3. else (every owner within its share) the least recently used entry of anyone.
// So an owner over its share loses entries to anyone's new ones however recently it used them,
// and an owner can push out others' entries only while it holds less than its share.
// Not thread-safe: the caller holds its lock. Header-only, no dependencies beyond the standard
// library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace sigil::verify {

template <class V>
class OwnedLru {
 public:
  // At most capacity entries; share (clamped to [1, capacity]) is what one owner may hold
  // before its entries are the first to go.
  OwnedLru(size_t capacity, size_t share)
      : capacity_(capacity),
        share_(share == 0 ? 1 : (share > capacity && capacity > 0 ? capacity : share)) {}
  OwnedLru(const OwnedLru&) = delete;
  OwnedLru& operator=(const OwnedLru&) = delete;

  // The value for key, made the most recently used (for everyone and for its owner); nullptr
  // on a miss.
  V* find(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    Entry& e = it->second;
    e.used = ++clock_;
    lru_.splice(lru_.begin(), lru_, e.lru);
    Keys& mine = e.owner->second;
    mine.splice(mine.begin(), mine, e.owner_lru);
    return &e.value;
  }

  void erase(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) remove(it);
  }

  // Stores value for key (replacing any), owned by owner; when full, makes room first (above).
  void put(const std::string& key, std::string_view owner, V value) {
    if (capacity_ == 0) return;
    erase(key);
    const std::string name(owner);
    if (entries_.size() >= capacity_) make_room(name);
    // Every allocation before anything is linked, so a throw leaves the map as it was.
    Keys everyone{nullptr};
    Keys owned{nullptr};
    auto o = owners_.try_emplace(name).first;
    typename Entries::iterator it;
    try {
      it = entries_.emplace(key, Entry{std::move(value), {}, {}, &*o, 0}).first;
    } catch (...) {
      if (o->second.empty()) owners_.erase(o);
      throw;
    }
    Entry& e = it->second;
    e.used = ++clock_;
    everyone.front() = &it->first;
    owned.front() = &it->first;
    lru_.splice(lru_.begin(), everyone);
    e.lru = lru_.begin();
    o->second.splice(o->second.begin(), owned);
    e.owner_lru = o->second.begin();
    // (A throw here leaves the owner out of over_ until it crosses its share again: its room
    // is then made by rule 3, never unsafely.)
    if (o->second.size() == share_ + 1) over_.insert(&*o);
  }

  size_t size() const { return entries_.size(); }
  // Entries owner holds now.
  size_t owned_by(std::string_view owner) const {
    auto o = owners_.find(std::string(owner));
    return o == owners_.end() ? 0 : o->second.size();
  }
  size_t share() const { return share_; }

 private:
  // Keys point at the map's own keys (stable: the map is node-based), most recent first.
  using Keys = std::list<const std::string*>;
  using Owners = std::unordered_map<std::string, Keys>;
  using Owner = typename Owners::value_type;
  struct Entry {
    V value;
    typename Keys::iterator lru;
    typename Keys::iterator owner_lru;
    Owner* owner = nullptr;  // its name and keys, in owners_ (pointers survive rehashing)
    uint64_t used = 0;       // clock_ at its last put or find
  };
  using Entries = std::unordered_map<std::string, Entry>;

  void make_room(const std::string& name) {
    if (auto o = owners_.find(name); o != owners_.end() && o->second.size() >= share_) {
      remove(entries_.find(*o->second.back()));
      return;
    }
    // The least recently used among the owners over their share: at most capacity / share of
    // them, each one's own list ordered, so one look at each one's oldest.
    const std::string* oldest = nullptr;
    uint64_t when = 0;
    for (Owner* over : over_) {
      const std::string* k = over->second.back();
      const uint64_t used = entries_.find(*k)->second.used;
      if (oldest == nullptr || used < when) {
        oldest = k;
        when = used;
      }
    }
    if (oldest == nullptr && !lru_.empty()) oldest = lru_.back();
    if (oldest != nullptr) remove(entries_.find(*oldest));
  }

  void remove(typename Entries::iterator it) {
    Entry& e = it->second;
    Owner* o = e.owner;
    lru_.erase(e.lru);
    o->second.erase(e.owner_lru);
    if (o->second.size() == share_) over_.erase(o);
    if (o->second.empty()) owners_.erase(owners_.find(o->first));
    entries_.erase(it);
  }

  const size_t capacity_;
  const size_t share_;
  uint64_t clock_ = 0;
  Entries entries_;
  Owners owners_;
  Keys lru_;  // everyone's, most recent first
  // Owners holding more than share_ entries; at most capacity_ / share_ of them.
  std::unordered_set<Owner*> over_ = [this] {
    std::unordered_set<Owner*> s;
    s.reserve(capacity_ / share_ + 2);
    return s;
  }();
};

}  // namespace sigil::verify
