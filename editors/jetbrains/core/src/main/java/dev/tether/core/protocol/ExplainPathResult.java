package dev.tether.core.protocol;

/** {@code tether/explainPath}: the decision for reading and for writing, and both in one line. */
public record ExplainPathResult(String path, PathDecision read, PathDecision write, String text) {}
