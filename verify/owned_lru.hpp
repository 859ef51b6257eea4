// verify/owned_lru.hpp: a bounded LRU map whose entries each have an owner, and no owner more
// than a share of the capacity.
//
// Role: the store under the verdict cache and the last-known-good store. Their entries are
// made by admissions, and the owner is the admission's namespace: a tenant whose pods name
// thousands of distinct images (each one a verification, and each a verdict) would otherwise
// push every other namespace's verdicts out, and with them the cluster's cache hits and its
// last-known-good answers in a registry outage. The share counts only when the map is full
// (a cluster with one busy namespace may fill it alone): then an owner at its share makes room
// among its own entries, and only one below it pushes out the least recently used of anyone's.
// So whatever one owner does, it takes at most share entries from the others.
// Not thread-safe: the caller holds its lock. Header-only, no dependencies beyond the standard
// library.
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace sigil::verify {

template <class V>
class OwnedLru {
 public:
  // At most capacity entries; when full, an owner holding share of them (clamped to
  // [1, capacity]) makes room among its own.
  OwnedLru(size_t capacity, size_t share)
      : capacity_(capacity), share_(share == 0 ? 1 : (share > capacity ? capacity : share)) {}
  OwnedLru(const OwnedLru&) = delete;
  OwnedLru& operator=(const OwnedLru&) = delete;

  // The value for key, made the most recently used (for everyone and for its owner); nullptr
  // on a miss.
  V* find(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    Entry& e = it->second;
    lru_.splice(lru_.begin(), lru_, e.lru);
    Keys& mine = e.owner->second;
    mine.splice(mine.begin(), mine, e.owner_lru);
    return &e.value;
  }

  void erase(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) remove(it);
  }

  // Stores value for key (replacing any), owned by owner. When full, makes room first: the
  // owner's own least recently used entry when it holds its share, else everyone's.
  void put(const std::string& key, std::string_view owner, V value) {
    if (capacity_ == 0) return;
    erase(key);
    const std::string name(owner);
    if (entries_.size() >= capacity_) {
      if (auto o = owners_.find(name); o != owners_.end() && o->second.size() >= share_) {
        remove(entries_.find(*o->second.back()));
      }
    }
    while (entries_.size() >= capacity_ && !lru_.empty()) {
      remove(entries_.find(*lru_.back()));
    }
    // Pointers to the map's elements survive its rehashing (iterators would not).
    typename Owners::value_type* o = &*owners_.try_emplace(name).first;
    auto it = entries_.emplace(key, Entry{std::move(value), {}, {}, o}).first;
    lru_.push_front(&it->first);
    it->second.lru = lru_.begin();
    o->second.push_front(&it->first);
    it->second.owner_lru = o->second.begin();
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
  struct Entry {
    V value;
    typename Keys::iterator lru;
    typename Keys::iterator owner_lru;
    typename Owners::value_type* owner = nullptr;  // its name and keys, in owners_
  };
  using Entries = std::unordered_map<std::string, Entry>;

  void remove(typename Entries::iterator it) {
    Entry& e = it->second;
    lru_.erase(e.lru);
    e.owner->second.erase(e.owner_lru);
    if (e.owner->second.empty()) owners_.erase(owners_.find(e.owner->first));
    entries_.erase(it);
  }

  const size_t capacity_;
  const size_t share_;
  Entries entries_;
  Owners owners_;
  Keys lru_;  // everyone's, most recent first
};

}  // namespace sigil::verify
