#include "decode_batcher.h"

#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "error.h"

namespace kl {

struct DecodeBatcher::Request {
    BackendState* state = nullptr;
    uint64_t position = 0;
    int32_t token = 0;
    const std::atomic<bool>* cancel = nullptr;
    bool done = false;
    // The failure, as status + message: each waiting thread throws its own copy.
    Status status = Status::Ok;
    std::string message;
};

DecodeBatcher::DecodeBatcher(const Backend& backend, size_t max_batch,
                             std::chrono::microseconds wait)
    : backend_(backend), max_batch_(max_batch), wait_(wait) {}

void DecodeBatcher::step(BackendState& state, uint64_t position, int32_t token,
                         const std::atomic<bool>& cancel) {
    Request request;
    request.state = &state, request.position = position, request.token = token;
    request.cancel = &cancel;
    std::unique_lock<std::mutex> lock(mutex_);
    queue_.push_back(&request);
    changed_.notify_all();  // a pass gathering steps may be waiting for this one
    while (!request.done) {
        if (running_)
            changed_.wait(lock);
        else
            run_pass(lock);  // leads a pass (which may not include this step if it is full)
    }
    if (request.status != Status::Ok) fail(request.status, request.message);
}

// Called with the lock held and no pass running; returns with the lock held.
void DecodeBatcher::run_pass(std::unique_lock<std::mutex>& lock) {
    running_ = true;
    if (wait_.count() > 0) {
        const size_t want = std::min(max_batch_, last_pass_);
        changed_.wait_for(lock, wait_, [&] { return queue_.size() >= want; });
    }
    std::vector<Request*> pass;
    pass.reserve(std::min(max_batch_, queue_.size()));
    while (!queue_.empty() && pass.size() < max_batch_) {
        Request* r = queue_.front();
        queue_.pop_front();
        if (r->cancel->load()) {  // Session::append consumes the request when this throws
            r->status = Status::Cancelled;
            r->message = "cancelled";
            r->done = true;
        } else {
            pass.push_back(r);
        }
    }
    if (!pass.empty()) last_pass_ = pass.size();
    lock.unlock();

    Status status = Status::Ok;
    std::string message;
    try {
        std::vector<BackendState*> states(pass.size());
        std::vector<uint64_t> positions(pass.size());
        std::vector<int32_t> tokens(pass.size());
        for (size_t i = 0; i < pass.size(); ++i)
            states[i] = pass[i]->state, positions[i] = pass[i]->position,
            tokens[i] = pass[i]->token;
        // A lone step takes the backend's one-session path (on a GPU: its decode graph).
        const std::atomic<bool> never(false);
        if (pass.size() == 1)
            backend_.forward(*states[0], positions[0], tokens.data(), 1, nullptr, nullptr, never);
        else if (pass.size() > 1)
            backend_.forward_batch(states.data(), positions.data(), tokens.data(), pass.size());
    } catch (const Error& e) {
        status = e.status(), message = e.what();
    } catch (const std::bad_alloc&) {
        status = Status::OutOfMemory, message = "out of memory in a batched decode step";
    } catch (const std::exception& e) {
        status = Status::Internal, message = std::string("internal error: ") + e.what();
    } catch (...) {
        status = Status::Internal, message = "internal error: unknown exception";
    }

    lock.lock();
    for (Request* r : pass) {
        r->status = status;
        r->message = message;
        r->done = true;
    }
    running_ = false;
    changed_.notify_all();
}

}  // namespace kl
