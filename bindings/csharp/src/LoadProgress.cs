using System;
using System.Runtime.ExceptionServices;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// Passes a progress callback (Model.Load's and Checkpoint.Quantize's <c>progress</c>) to the
    /// C library as a delegate marshalled to a kl_progress_callback, kept alive until the call
    /// returns. No exception may unwind through the library's frames: the first one the
    /// callback throws is kept, aborts the call and is rethrown (with its own stack) when the
    /// call returns.
    /// </summary>
    internal static class LoadProgress
    {
        internal static T Run<T>(kl_model_params parameters, Func<float, bool> progress, Func<T> load)
        {
            if (progress == null) return load();
            var relay = new Relay(progress);
            Native.Call(() => kimi_linear_native.klb_model_params_set_progress(parameters, relay.Callback));
            return relay.Run(load);
        }

        /// <summary>Runs <paramref name="call"/> with the native callback of
        /// <paramref name="progress"/>, or with null (no callback) when that is null.</summary>
        internal static void Run(Func<float, bool> progress, Action<kimi_linear_native.ProgressCallback> call)
        {
            if (progress == null)
            {
                call(null);
                return;
            }
            var relay = new Relay(progress);
            relay.Run(() =>
            {
                call(relay.Callback);
                return true;
            });
        }

        private sealed class Relay
        {
            private readonly Func<float, bool> progress;
            private Exception thrown;
            internal readonly kimi_linear_native.ProgressCallback Callback;

            internal Relay(Func<float, bool> progress)
            {
                this.progress = progress;
                Callback = Report;
            }

            private int Report(float fraction, IntPtr user)
            {
                if (thrown != null) return 1;
                try
                {
                    return progress(fraction) ? 0 : 1;
                }
                catch (Exception e)
                {
                    thrown = e;
                    return 1;
                }
            }

            internal T Run<T>(Func<T> call)
            {
                try
                {
                    return call();
                }
                catch (KimiLinearException.Cancelled) when (thrown != null)
                {
                    ExceptionDispatchInfo.Capture(thrown).Throw();
                    throw; // not reached
                }
                finally
                {
                    GC.KeepAlive(Callback);
                }
            }
        }
    }
}
