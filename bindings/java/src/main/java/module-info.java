/**
 * Kimi Linear inference runtime for Java: {@link ai.kimi.linear.Model}, {@link ai.kimi.linear.Session}
 * and their options. Only {@code ai.kimi.linear} is exported; the JNI classes SWIG generates
 * ({@code ai.kimi.linear.internal}) stay inside the module, so on the module path no consumer
 * can compile against them (on the class path the descriptor is ignored, as for any jar).
 */
module ai.kimi.linear {
    exports ai.kimi.linear;
}
