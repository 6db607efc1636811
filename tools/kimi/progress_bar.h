// kimi's progress bar on stderr, a kl_progress_callback for loads and checkpoint writes; the
// commands set it only when stderr is a terminal.
#pragma once

#include <cstdio>
#include <string>

namespace kimi {

struct ProgressBar {
    const char* label;  // "loading", "quantizing"
    int shown = -1;     // the percentage on the screen, -1 before the first report
};

// user: a ProgressBar. Redraws only when the percentage changes (a checkpoint write reports
// after every tensor, thousands of them), rounded down so that 100% means done, and ends the
// line at 1.0; never aborts.
inline int progress_bar(float fraction, void* user) {
    auto* bar = static_cast<ProgressBar*>(user);
    const int percent = static_cast<int>(fraction * 100);
    if (percent == bar->shown && fraction < 1.0f) return 0;
    bar->shown = percent;
    const int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::fprintf(stderr, "\r%s [%s%s] %3d%%", bar->label, std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), percent);
    if (fraction >= 1.0f) std::fprintf(stderr, "\n");
    return 0;
}

}  // namespace kimi
