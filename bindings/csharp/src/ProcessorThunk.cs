using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// Carries a <see cref="LogitsProcessor"/> through the native generator: <see cref="Callback"/>
    /// (the P/Invoke delegate, kept alive by the generator's handle as long as the generator)
    /// copies the logits and history into arrays, calls the processor, writes the logits back, and
    /// lets no exception into native code: the first one ends the generation (as a true return
    /// does) and <see cref="Rethrow"/> throws it after the step returns.
    /// </summary>
    internal sealed class ProcessorThunk
    {
        private readonly LogitsProcessor processor;
        private float[] logits = new float[0];
        private ExceptionDispatchInfo thrown;

        internal ProcessorThunk(LogitsProcessor processor)
        {
            this.processor = processor;
            Callback = Call;
        }

        internal kimi_linear_native.LogitsProcessorCallback Callback { get; }

        private int Call(IntPtr user, IntPtr logitsPtr, UIntPtr vocabSize, IntPtr historyPtr, UIntPtr nHistory)
        {
            if (thrown != null) return 1;
            try
            {
                int n = checked((int)vocabSize.ToUInt64());
                if (logits.Length != n) logits = new float[n];
                Marshal.Copy(logitsPtr, logits, 0, n);
                int[] history = new int[checked((int)nHistory.ToUInt64())];
                if (history.Length > 0) Marshal.Copy(historyPtr, history, 0, history.Length);
                bool stop = processor(logits, history);
                Marshal.Copy(logits, 0, logitsPtr, n);
                return stop ? 1 : 0;
            }
            catch (Exception e)
            {
                thrown = ExceptionDispatchInfo.Capture(e);
                return 1;
            }
        }

        /// <summary>Throws what the processor threw during the last step, once (nothing if it threw nothing).</summary>
        internal void Rethrow()
        {
            ExceptionDispatchInfo e = thrown;
            thrown = null;
            if (e != null) e.Throw();
        }
    }
}
