using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using KimiLinear.Internal;

namespace KimiLinear
{
    /// <summary>
    /// A loaded Kimi Linear model: weights and tokenizer, immutable, shared by any number of
    /// <see cref="Session"/>s on any threads.
    /// </summary>
    /// <remarks>
    /// Dispose it when done; a finalizer (its SafeHandle) frees a model that never was. Disposing
    /// a model while its sessions are still alive is safe: each kl_session holds the weights by
    /// shared ownership (a shared_ptr in capi/kimi_linear.cpp), and they are freed with the last
    /// session. After Dispose every call but <see cref="Info"/> and <see cref="HasTokenizer"/>
    /// throws ObjectDisposedException.
    /// </remarks>
    public sealed class Model : IDisposable
    {
        private readonly ModelHandle handle;

        private Model(SWIGTYPE_p_kl_model model)
        {
            handle = new ModelHandle(Native.Pointer(model));
            try
            {
                using (kl_model_info info = Native.Call(() => kimi_linear_native.klb_model_info(model)))
                    Info = new ModelInfo(info);
                HasTokenizer = Native.Call(() => kimi_linear_native.klb_model_has_tokenizer(model)) != 0;
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Loads a Hugging Face style checkpoint folder: config.json, *.safetensors (sharded
        /// through model.safetensors.index.json), tokenizer files if present.
        /// </summary>
        /// <param name="dir">the folder</param>
        /// <param name="device">Auto: CUDA when built with it and a GPU is present</param>
        /// <param name="threads">CPU worker threads; 0 = all hardware threads</param>
        /// <param name="deviceIndex">GPU ordinal for Device.Cuda</param>
        /// <param name="progress">called on the loading thread with the fraction done (0..1, rising
        /// to 1); returning false aborts the load (KimiLinearException.Cancelled, no model); an
        /// exception it throws aborts it too and is rethrown</param>
        /// <param name="maxBatch">decode batching across threads: with more than 1, one-token steps of
        /// this model's sessions that run at the same time on different threads (Next, Generate
        /// steps) share one forward pass of up to maxBatch sessions, each keeping its own
        /// results; 0 or 1: each step runs alone. At most 4096 (the library's bound). To step
        /// several sessions from one thread, use <see cref="Batch"/>.</param>
        /// <param name="batchWaitUs">how long (microseconds) a step waits for the others' steps; at most 1000000</param>
        /// <param name="weights">the linear weights' form once loaded: Auto as the checkpoint stores
        /// them, Bf16 dequantized, Fp8 or Int4 a bf16 checkpoint quantized on load; another value
        /// is KimiLinearException.InvalidArgument</param>
        /// <param name="devices">the devices the model is split over, one shard each (at most 8;
        /// <see cref="ModelInfo.Devices"/> reports it); null or empty: one device, deviceIndex. On
        /// the CPU { 0, 1, ..., n-1 } runs n shards on threads (a check of the split, no faster); on
        /// CUDA the entries are GPU ordinals, and more than one is KimiLinearException.Unsupported
        /// unless the environment has KL_CUDA_SHARDS=1 (CUDA shards over NCCL are built but not
        /// yet verified on several GPUs). More than 8, a negative or repeated ordinal:
        /// KimiLinearException.InvalidArgument; a count that does not divide the model's heads,
        /// widths or experts: KimiLinearException.Unsupported</param>
        /// <exception cref="KimiLinearException.Io">a file could not be read</exception>
        /// <exception cref="KimiLinearException.Format">a file is malformed</exception>
        /// <exception cref="ArgumentOutOfRangeException">maxBatch or batchWaitUs is negative</exception>
        public static Model Load(string dir, Device device = Device.Auto, int threads = 0, int deviceIndex = 0,
                                 Func<float, bool> progress = null, int maxBatch = 0, int batchWaitUs = 0,
                                 WeightFormat weights = WeightFormat.Auto, int[] devices = null)
        {
            if (dir == null) throw new ArgumentNullException(nameof(dir));
            using (kl_model_params p = ModelParams(device, threads, deviceIndex, maxBatch, batchWaitUs, weights, devices))
                return new Model(LoadProgress.Run(p, progress,
                                                  () => Native.Call(() => kimi_linear_native.klb_model_load(dir, p))));
        }

        /// <summary>
        /// A model with deterministic random weights for a config.json text (no files, no
        /// tokenizer): benchmarks and tests of any shape. progress, maxBatch, batchWaitUs, weights, devices: as in
        /// <see cref="Load"/>.
        /// </summary>
        public static Model CreateRandom(string configJson, ulong seed, Device device = Device.Auto, int threads = 0,
                                         int deviceIndex = 0, Func<float, bool> progress = null, int maxBatch = 0,
                                         int batchWaitUs = 0, WeightFormat weights = WeightFormat.Auto,
                                         int[] devices = null)
        {
            if (configJson == null) throw new ArgumentNullException(nameof(configJson));
            using (kl_model_params p = ModelParams(device, threads, deviceIndex, maxBatch, batchWaitUs, weights, devices))
                return new Model(LoadProgress.Run(p, progress, () => Native.Call(
                                     () => kimi_linear_native.klb_model_create_random(configJson, seed, p))));
        }

        // Every way to a model passes here first, before the generated classes are touched.
        private static kl_model_params ModelParams(Device device, int threads, int deviceIndex, int maxBatch,
                                                   int batchWaitUs, WeightFormat weights, int[] devices)
        {
            // Negative values have no unsigned field to go to; the library checks the upper bounds.
            if (maxBatch < 0) throw new ArgumentOutOfRangeException(nameof(maxBatch), maxBatch, "must be >= 0");
            if (batchWaitUs < 0) throw new ArgumentOutOfRangeException(nameof(batchWaitUs), batchWaitUs, "must be >= 0");
            NativeLibraryLoader.EnsureLoaded();
            var p = new kl_model_params();
            kimi_linear_native.kl_model_params_default(p);
            p.device = (kl_device)(int)device;
            p.n_threads = threads;
            p.device_index = deviceIndex;
            p.max_batch = (uint)maxBatch;
            p.batch_wait_us = (uint)batchWaitUs;
            p.weight_format = (kl_weight_format)(int)weights; // out of range: the library's error
            // The library checks the list (a longer one than it holds keeps its count, refused).
            int[] list = devices ?? new int[0];
            kimi_linear_native.klb_model_params_set_devices(p, list, (ulong)list.Length);
            return p;
        }

        /// <summary>The library's version, "MAJOR.MINOR.PATCH".</summary>
        public static string LibraryVersion
        {
            get { NativeLibraryLoader.EnsureLoaded(); return kimi_linear_native.kl_version(); }
        }

        /// <summary>The ABI major of the loaded library (the SONAME suffix).</summary>
        public static int AbiVersion
        {
            get { NativeLibraryLoader.EnsureLoaded(); return (int)kimi_linear_native.kl_abi_version(); }
        }

        /// <summary>The ABI major these bindings were generated for (KL_ABI_VERSION).</summary>
        public static int BindingAbiVersion
        {
            get { return BuildInfo.AbiVersion; } // a constant: no native call, works without the library
        }

        /// <summary>What the model is (read at load; a model is immutable). Works after Dispose.</summary>
        public ModelInfo Info { get; }

        /// <summary>True if the model folder had a tokenizer (tiktoken.model): the text functions work.</summary>
        public bool HasTokenizer { get; }

        /// <summary>True once disposed.</summary>
        public bool IsDisposed
        {
            get { return handle.IsClosed; }
        }

        /// <summary>A new session at position 0 whose MLA cache holds maxContext tokens (0 = the model's default).</summary>
        public Session CreateSession(ulong maxContext = 0)
        {
            return Use(m =>
            {
                using (var p = new kl_session_params())
                {
                    kimi_linear_native.kl_session_params_default(p);
                    p.max_context = maxContext;
                    SWIGTYPE_p_kl_session s = kimi_linear_native.klb_session_create(m, p);
                    return new Session(new SessionHandle(Native.Pointer(s)), this);
                }
            });
        }

        /// <summary>
        /// Token ids of text (no BOS added). parseSpecial: the text of an added token (e.g.
        /// "&lt;|im_end|&gt;") becomes its id; otherwise such text is plain text.
        /// </summary>
        /// <exception cref="KimiLinearException.Unsupported">the model has no tokenizer</exception>
        public int[] Tokenize(string text, bool parseSpecial = true)
        {
            if (text == null) throw new ArgumentNullException(nameof(text));
            byte[] utf8 = Encoding.UTF8.GetBytes(text); // a lone surrogate becomes U+FFFD
            return Use(m =>
            {
                // Most tokens cover several bytes; a retry with the exact size covers the rest.
                int[] ids = new int[utf8.Length + 8];
                for (;;)
                {
                    long n = kimi_linear_native.klb_tokenize(m, utf8, (ulong)utf8.Length, parseSpecial ? 1 : 0, ids,
                                                             (ulong)ids.Length);
                    if (n >= 0)
                    {
                        if (n != ids.Length) Array.Resize(ref ids, (int)n);
                        return ids;
                    }
                    ids = new int[Native.ArrayLength(-n)];
                }
            });
        }

        /// <summary>The text of tokens (added tokens as their text; ill-formed UTF-8 as U+FFFD).</summary>
        /// <exception cref="KimiLinearException.InvalidArgument">a token the tokenizer does not have</exception>
        /// <exception cref="KimiLinearException.Unsupported">the model has no tokenizer</exception>
        public string Detokenize(int[] tokens)
        {
            if (tokens == null) throw new ArgumentNullException(nameof(tokens));
            return Use(m => ReadText((buf, cap) => kimi_linear_native.klb_detokenize(m, tokens, (ulong)tokens.Length, buf, cap),
                                     tokens.Length * 8L + 16));
        }

        /// <summary>
        /// The conversation in the model's chat format as text, for display and logs.
        /// addGenerationPrompt appends the assistant's opening. A conversation that does not
        /// start with a system message gets the model's default one, if its template has one.
        /// To prompt the model use <see cref="TokenizeChat"/>: tokenizing this text with
        /// parseSpecial = true lets a message holding "&lt;|im_end|&gt;&lt;|im_system|&gt;..."
        /// become control tokens.
        /// </summary>
        /// <exception cref="KimiLinearException.Unsupported">the model has no tokenizer</exception>
        public string ApplyChatTemplate(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
        {
            byte[] input = PackMessages(messages);
            return Use(m => ReadText((buf, cap) => kimi_linear_native.klb_chat_template_apply(
                                         m, input, (ulong)input.Length, addGenerationPrompt ? 1 : 0, buf, cap),
                                     input.Length * 2L + 256));
        }

        // Role and content of each message, packed (klb_chat_template_apply, klb_chat_tokenize).
        private static byte[] PackMessages(IEnumerable<ChatMessage> messages)
        {
            if (messages == null) throw new ArgumentNullException(nameof(messages));
            var strings = new List<string>();
            foreach (ChatMessage message in messages)
            {
                if (message == null) throw new ArgumentException("a message is null", nameof(messages));
                strings.Add(message.Role);
                strings.Add(message.Content);
            }
            return PackStrings(strings, "a chat message", strict: false);
        }

        /// <summary>
        /// The conversation's token ids in the model's chat format (kl_chat_tokenize), for
        /// <see cref="Session.Append"/>: the format's markup becomes its special tokens and each
        /// message's content is plain text, so no message can forge a control token. Roles,
        /// default system message and addGenerationPrompt as in <see cref="ApplyChatTemplate"/>.
        /// </summary>
        /// <exception cref="KimiLinearException.InvalidArgument">an unknown role</exception>
        /// <exception cref="KimiLinearException.Unsupported">the model has no tokenizer</exception>
        public int[] TokenizeChat(IEnumerable<ChatMessage> messages, bool addGenerationPrompt = true)
        {
            byte[] input = PackMessages(messages);
            return Use(m =>
            {
                int[] ids = new int[input.Length + 256]; // well-formed text: at most one id a byte
                for (;;)
                {
                    long n = kimi_linear_native.klb_chat_tokenize(m, input, (ulong)input.Length,
                                                                  addGenerationPrompt ? 1 : 0, ids, (ulong)ids.Length);
                    if (n >= 0)
                    {
                        if (n != ids.Length) Array.Resize(ref ids, (int)n);
                        return ids;
                    }
                    ids = new int[Native.ArrayLength(-n)];
                }
            });
        }

        /// <summary>Frees the native model (sessions still alive keep working). Idempotent.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        public override string ToString()
        {
            return "Model(" + Info + (IsDisposed ? ", disposed)" : ")");
        }

        private T Use<T>(Func<SWIGTYPE_p_kl_model, T> body)
        {
            return handle.Use(nameof(Model), ptr => body(Native.Model(ptr)));
        }

        private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>
        /// Strings as the klb_* helpers take a list: NUL-terminated UTF-8, one after another.
        /// strict: a lone surrogate is an InvalidArgument (else it becomes U+FFFD).
        /// </summary>
        internal static byte[] PackStrings(IList<string> strings, string what, bool strict)
        {
            var packed = new MemoryStream();
            for (int i = 0; i < strings.Count; ++i)
            {
                string s = strings[i];
                if (s == null) throw new ArgumentNullException(what + "[" + i + "]");
                if (s.IndexOf('\0') >= 0)
                    throw new KimiLinearException.InvalidArgument(what + "[" + i + "] contains a NUL character");
                byte[] bytes;
                try
                {
                    bytes = (strict ? StrictUtf8 : Encoding.UTF8).GetBytes(s);
                }
                catch (EncoderFallbackException)
                {
                    throw new KimiLinearException.InvalidArgument(what + "[" + i + "] has a lone surrogate (not valid UTF-16)");
                }
                packed.Write(bytes, 0, bytes.Length);
                packed.WriteByte(0);
            }
            return packed.ToArray();
        }

        /// <summary>The "cap too small" protocol of the text helpers: the length, or -(length needed).</summary>
        internal static string ReadText(Func<byte[], ulong, long> call, long guess)
        {
            byte[] buf = new byte[Native.ArrayLength(guess)];
            for (;;)
            {
                long n = call(buf, (ulong)buf.Length);
                if (n >= 0) return Encoding.UTF8.GetString(buf, 0, (int)n);
                buf = new byte[Native.ArrayLength(-n + 1)];
            }
        }
    }
}
