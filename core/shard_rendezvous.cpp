#include "shard_rendezvous.h"

#include <algorithm>

#include "error.h"

namespace kl {

ShardRendezvous::ShardRendezvous(std::vector<std::pair<int64_t, int64_t>> columns)
    : columns_(std::move(columns)), parts_(columns_.size(), nullptr) {
    if (columns_.empty()) fail(Status::InvalidArgument, "a rendezvous of no shards");
}

void ShardRendezvous::arrive() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (aborted_) fail(Status::Cancelled, "another shard of the model failed");
    const uint64_t generation = generation_;
    if (++waiting_ == shards()) {
        waiting_ = 0;
        ++generation_;
        cv_.notify_all();
        return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation) fail(Status::Cancelled, "another shard of the model failed");
}

void ShardRendezvous::abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    cv_.notify_all();
}

void ShardRendezvous::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = false;
    waiting_ = 0;
}

void ShardRendezvous::sum(int shard, float* values, size_t count) {
    parts_[static_cast<size_t>(shard)] = values;
    arrive();
    std::vector<float> total(count, 0.0f);
    for (const float* part : parts_)
        for (size_t i = 0; i < count; ++i) total[i] += part[i];
    arrive();  // every shard has read every part: each may overwrite its own
    std::copy(total.begin(), total.end(), values);
}

void ShardRendezvous::gather(int shard, const float* part, size_t rows, float* whole) {
    parts_[static_cast<size_t>(shard)] = part;
    arrive();
    const size_t width = static_cast<size_t>(columns_.back().second);
    for (size_t g = 0; g < columns_.size(); ++g) {
        const size_t begin = static_cast<size_t>(columns_[g].first);
        const size_t w = static_cast<size_t>(columns_[g].second) - begin;
        for (size_t r = 0; r < rows; ++r)
            std::copy(parts_[g] + r * w, parts_[g] + (r + 1) * w, whole + r * width + begin);
    }
    arrive();  // every shard has copied every part before any part changes
}

ShardLinks ShardRendezvous::links(int shard) {
    ShardLinks l;
    l.sum = [this, shard](float* values, size_t count) { sum(shard, values, count); };
    l.gather = [this, shard](const float* part, size_t rows, float* whole) {
        gather(shard, part, rows, whole);
    };
    return l;
}

}  // namespace kl
