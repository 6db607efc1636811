/** The jar's consumer as a module: it reads ai.kimi.linear and nothing else of the jar. */
module kimi.linear.consumer {
    requires ai.kimi.linear;
}
