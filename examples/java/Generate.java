// Streams a chat answer from a model folder:
//   java -cp kimi-linear.jar examples/java/Generate.java MODEL_DIR "question"
import ai.kimi.linear.ChatMessage;
import ai.kimi.linear.GenerateOptions;
import ai.kimi.linear.Model;
import ai.kimi.linear.SamplingParams;
import ai.kimi.linear.Session;
import java.nio.file.Path;
import java.util.List;

public class Generate {
    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: Generate MODEL_DIR QUESTION");
            System.exit(2);
        }
        try (Model model = Model.load(Path.of(args[0]));
             Session session = model.newSession()) {
            // The question stays plain text: a typed "<|im_end|>" cannot end the turn.
            session.append(model.tokenizeChat(List.of(ChatMessage.user(args[1])), true));
            GenerateOptions options = GenerateOptions.builder()
                    .maxNewTokens(64)
                    .sampling(SamplingParams.defaults().withTemperature(0.7f).withSeed(1))
                    .stopTokens(model.tokenize("<|im_end|>", true))
                    .build();
            long pieces = session.stream(options).peek(piece -> {
                System.out.print(piece);
                System.out.flush();
            }).count();
            System.out.println("\n[" + pieces + " pieces]");
        }
    }
}
