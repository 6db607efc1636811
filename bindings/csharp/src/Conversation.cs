using System;
using System.Collections.Generic;
using System.Linq;

namespace KimiLinear
{
    /// <summary>
    /// A chat with a model held in one <see cref="Session"/>. Each turn appends only its new
    /// tokens (the new messages in the chat format and the assistant's opening), so the history
    /// is never read again; a reply is the tokens the model generates, closed by the end-of-turn
    /// token (<see cref="ModelInfo.EotToken"/>, &lt;|im_end|&gt;), at which generation stops.
    /// Editing or regenerating an earlier turn restores the longest kept state whose tokens are a
    /// prefix of the new conversation's and appends the rest: states (session forks) are kept
    /// where each reply starts and ends, the last <c>keepStates</c> of them (each costs a
    /// session's memory).
    /// </summary>
    /// <remarks>
    /// A reply (<see cref="Say"/>, <see cref="Reply"/>, <see cref="Regenerate"/>) is a
    /// <see cref="Generation"/> read once; it is recorded as an assistant message (its text, its
    /// tokens) when that enumeration ends or is disposed, or by the next call on the conversation
    /// (which stops a reply still being read). Used by one thread at a time.
    /// </remarks>
    public sealed class Conversation : IDisposable
    {
        // A system message with no content: the tokens of a message rendered after it are that
        // message's alone (a format's default system message comes only before a first message).
        private static readonly ChatMessage EmptySystem = ChatMessage.System("");

        private readonly Model model;
        private readonly ulong maxContext;
        private readonly int keepStates;
        private readonly GenerateOptions defaults;
        private readonly int eot;
        private readonly int emptyLength;
        private readonly int[] opening; // the assistant's opening, after a message
        private readonly List<ChatMessage> messages = new List<ChatMessage>();
        private readonly List<int[]> segments = new List<int[]>(); // each message's tokens
        private readonly List<(int[] Tokens, Session State)> kept = new List<(int[], Session)>();
        private Session session;
        private Generation current; // the reply not yet recorded

        /// <param name="model">a model with a chat format (<see cref="ModelInfo.EotToken"/>)</param>
        /// <param name="messages">the conversation's first messages (e.g. a system message)</param>
        /// <param name="defaults">the options of Say/Reply/Regenerate without options (the end-of-turn token is added to their stop tokens)</param>
        /// <param name="maxContext">each session's capacity (0: the model's default)</param>
        /// <param name="keepStates">how many states to keep for edits and regenerations (&gt;= 1)</param>
        /// <exception cref="ArgumentException">a model without a chat format</exception>
        public Conversation(Model model, IEnumerable<ChatMessage> messages = null, GenerateOptions defaults = null,
                            ulong maxContext = 0, int keepStates = 4)
        {
            this.model = model ?? throw new ArgumentNullException(nameof(model));
            if (keepStates < 1) throw new ArgumentOutOfRangeException(nameof(keepStates), "keepStates must be >= 1");
            this.defaults = (defaults ?? new GenerateOptions()).Clone();
            this.maxContext = maxContext;
            this.keepStates = keepStates;
            eot = model.Info.EotToken;
            if (eot < 0) throw new ArgumentException("this model has no chat format (no end-of-turn token)", nameof(model));
            int[] empty = model.TokenizeChat(new[] { EmptySystem }, false);
            emptyLength = empty.Length;
            opening = model.TokenizeChat(new[] { EmptySystem }, true).Skip(empty.Length).ToArray();
            foreach (ChatMessage m in messages ?? new ChatMessage[0]) AddMessage(m);
            session = model.CreateSession(maxContext);
        }

        /// <summary>The conversation so far (a copy).</summary>
        public IReadOnlyList<ChatMessage> Messages
        {
            get
            {
                FinishReply();
                return messages.ToArray();
            }
        }

        /// <summary>The session holding the conversation (read it; changing it confuses the conversation).</summary>
        public Session Session
        {
            get { return session; }
        }

        /// <summary>The conversation's tokens: each message's, the replies as generated.</summary>
        public int[] Tokens
        {
            get
            {
                FinishReply();
                return segments.SelectMany(t => t).ToArray();
            }
        }

        /// <summary>The tokens appended as prompts so far (what was read, not generated).</summary>
        public long Prefilled { get; private set; }

        /// <summary>Adds a message without replying (e.g. a tool's result); nothing runs yet.</summary>
        public void Add(ChatMessage message)
        {
            FinishReply();
            AddMessage(message ?? throw new ArgumentNullException(nameof(message)));
        }

        /// <summary>Adds a user message and streams the reply (options null: the conversation's defaults).</summary>
        public Generation Say(string content, GenerateOptions options = null)
        {
            Add(ChatMessage.User(content));
            return Reply(options);
        }

        /// <summary>
        /// Streams the assistant's reply to the conversation so far: the session is brought to the
        /// conversation's tokens and the assistant's opening (appending only what it lacks) and
        /// generates until the end-of-turn token or the options' other rules.
        /// </summary>
        public Generation Reply(GenerateOptions options = null)
        {
            GenerateOptions turn = Session.WithEndOfTurn(model.Info, options ?? defaults);
            FinishReply();
            int[] history = segments.SelectMany(t => t).ToArray();
            Restore(history.Concat(opening).ToArray());
            Keep();
            GenerationRun run = null;
            Generation reply = session.GenerateOnce(turn, () => Record(run, history.Length));
            run = reply.Run;
            current = reply;
            return reply;
        }

        /// <summary>
        /// Drops the last message if it is the assistant's and replies again: from the state kept
        /// where that reply started, nothing is read again.
        /// </summary>
        public Generation Regenerate(GenerateOptions options = null)
        {
            FinishReply();
            int last = messages.Count - 1;
            if (last >= 0 && messages[last].Role == "assistant")
            {
                messages.RemoveAt(last);
                segments.RemoveAt(last);
            }
            return Reply(options);
        }

        /// <summary>
        /// Changes message <paramref name="index"/>'s content and drops the messages after it (a
        /// chat UI's edit); <see cref="Reply"/> then answers it, restoring the longest kept state that fits.
        /// </summary>
        public void Edit(int index, string content)
        {
            FinishReply();
            if (index < 0 || index >= messages.Count) throw new ArgumentOutOfRangeException(nameof(index));
            string role = messages[index].Role;
            messages.RemoveRange(index, messages.Count - index);
            segments.RemoveRange(index, segments.Count - index);
            AddMessage(new ChatMessage(role, content));
        }

        /// <summary>Frees the session and the kept states (records a reply still open first). Idempotent.</summary>
        public void Dispose()
        {
            try
            {
                if (!session.IsDisposed) FinishReply();
            }
            finally
            {
                foreach (var k in kept) k.State.Dispose();
                kept.Clear();
                session.Dispose();
            }
        }

        private void AddMessage(ChatMessage message)
        {
            int[] segment = messages.Count == 0
                ? model.TokenizeChat(new[] { message }, false) // with the format's default system message, if any
                : model.TokenizeChat(new[] { EmptySystem, message }, false).Skip(emptyLength).ToArray();
            messages.Add(message);
            segments.Add(segment);
        }

        /// <summary>Ends the reply still open (its generator freed: reading on fails), which records it.</summary>
        private void FinishReply()
        {
            Generation open = current;
            current = null;
            if (open == null) return;
            open.Run.Active?.Dispose();
            open.Run.End();
        }

        /// <summary>Records a reply that ended: closes its turn with the end-of-turn token when it ended another way.</summary>
        private void Record(GenerationRun run, int historyLength)
        {
            if (current != null && current.Run == run) current = null;
            int[] tokens = session.Tokens;
            if (tokens.Length == 0 || tokens[tokens.Length - 1] != eot)
            {
                session.Append(new[] { eot });
                Prefilled += 1;
                tokens = tokens.Concat(new[] { eot }).ToArray();
            }
            messages.Add(ChatMessage.Assistant(run.Text.ToString()));
            segments.Add(tokens.Skip(historyLength).ToArray());
            Keep();
        }

        /// <summary>
        /// Makes the session hold exactly target: appends to it when its tokens are a prefix, else
        /// starts from the longest kept prefix (or an empty session) and appends the rest.
        /// </summary>
        private void Restore(int[] target)
        {
            int[] have = session.Tokens;
            if (!IsPrefix(have, target))
            {
                int best = -1;
                for (int i = 0; i < kept.Count; ++i)
                    if (IsPrefix(kept[i].Tokens, target) && (best < 0 || kept[i].Tokens.Length > kept[best].Tokens.Length))
                        best = i;
                Session fresh = best >= 0 ? kept[best].State.Fork() : model.CreateSession(maxContext);
                session.Dispose();
                session = fresh;
                have = best >= 0 ? kept[best].Tokens : new int[0];
            }
            if (target.Length > have.Length)
            {
                session.Append(target.Skip(have.Length).ToArray());
                Prefilled += target.Length - have.Length;
            }
        }

        private void Keep()
        {
            kept.Add((session.Tokens, session.Fork()));
            while (kept.Count > keepStates)
            {
                kept[0].State.Dispose();
                kept.RemoveAt(0);
            }
        }

        private static bool IsPrefix(int[] prefix, int[] of)
        {
            if (prefix.Length > of.Length) return false;
            for (int i = 0; i < prefix.Length; ++i)
                if (prefix[i] != of[i]) return false;
            return true;
        }
    }
}
