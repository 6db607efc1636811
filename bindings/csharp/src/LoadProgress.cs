using System;
using System.Runtime.ExceptionServices;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// Passes a load's progress callback (Model.Load's <c>progress</c>) to the C library as a
    /// delegate marshalled to a kl_progress_callback, kept alive until the load returns. No
    /// exception may unwind through the library's frames: the first one the callback throws is
    /// kept, aborts the load and is rethrown (with its own stack) when the load returns.
    /// </summary>
    internal static class LoadProgress
    {
        internal static T Run<T>(kl_model_params parameters, Func<float, bool> progress, Func<T> load)
        {
            if (progress == null) return load();
            Exception thrown = null;
            kimi_linear_native.ProgressCallback callback = (fraction, user) =>
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
            };
            Native.Call(() => kimi_linear_native.klb_model_params_set_progress(parameters, callback));
            try
            {
                return load();
            }
            catch (KimiLinearException.Cancelled) when (thrown != null)
            {
                ExceptionDispatchInfo.Capture(thrown).Throw();
                throw; // not reached
            }
            finally
            {
                GC.KeepAlive(callback);
            }
        }
    }
}
