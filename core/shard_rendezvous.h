// Where G shards of a split model, run by G threads of one process, meet
// (docs/design/sharding.md): a sum of each block's partial output and the gather of the
// logits, each two barriers, the parts added in shard order so that every shard holds the
// same bits. A shard that fails (an error, a cancel) calls abort(): every shard waiting at
// a barrier, and every one arriving later, gets Status::Cancelled instead of blocking, so a
// failed step unwinds on all shards and none of them commits it. reset() re-arms it for the
// next step, once every shard has left the failed one.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace kl {

// The device-side links of a split model's shards when their backend has its own (a GPU
// backend's communicators, made once per load by BackendProvider::create_shard_group).
// The ShardedBackend aborts it with the rendezvous when a shard fails, so that shards
// waiting in a device collective the failed one never reaches return, and resets it once
// every shard has left the step.
class ShardGroup {
public:
    virtual ~ShardGroup() = default;
    virtual void abort() = 0;
    virtual void reset() = 0;
};

// What a shard's backend calls where the shards meet: `sum` adds a block's partial output
// (`count` floats, host memory) over the shards in place, every shard ending with the same
// total; `gather` puts every shard's logits ([rows, its vocabulary part]) into the whole
// rows ([rows, vocab]). `group` is the shards' ShardGroup, null when the backend has none: a
// backend that has one sums device memory through it, and uses `sum` only to decide things
// alike on every shard (a cancel).
struct ShardLinks {
    std::function<void(float* values, size_t count)> sum;
    std::function<void(const float* part, size_t rows, float* whole)> gather;
    ShardGroup* group = nullptr;
};

class ShardRendezvous {
public:
    // columns[g]: shard g's part [begin, end) of a gathered row.
    explicit ShardRendezvous(std::vector<std::pair<int64_t, int64_t>> columns);

    int shards() const { return static_cast<int>(columns_.size()); }
    // values[0, count) of `shard` becomes the sum over the shards of theirs.
    void sum(int shard, float* values, size_t count);
    // whole [rows, width] (width = the last part's end) gets every shard's part [rows, its
    // columns]; `shard` gives `part`.
    void gather(int shard, const float* part, size_t rows, float* whole);
    void abort();
    void reset();
    // The links of shard `shard` to this rendezvous.
    ShardLinks links(int shard);

private:
    void arrive();  // throws Cancelled once aborted

    std::vector<std::pair<int64_t, int64_t>> columns_;
    std::vector<const float*> parts_;
    std::mutex mutex_;
    std::condition_variable cv_;
    int waiting_ = 0;
    uint64_t generation_ = 0;
    bool aborted_ = false;
};

}  // namespace kl
