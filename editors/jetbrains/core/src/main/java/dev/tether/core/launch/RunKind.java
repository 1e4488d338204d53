package dev.tether.core.launch;

/**
 * The run-configuration kinds the plugin patches, and the debug type each one is sent to the
 * daemon as (the daemon writes the environment into {@code env} for all of them).
 */
public enum RunKind {
    /** IntelliJ "Application": {@code executable} is the JVM, {@code target} the main class. */
    JAVA_APPLICATION("java"),
    /** A Gradle run configuration: {@code executable} is gradle or the wrapper, {@code tasks} the tasks. */
    GRADLE("gradle"),
    /** A Maven run configuration: {@code executable} is mvn or the wrapper, {@code tasks} the goals. */
    MAVEN("maven"),
    /** GoLand "Go Build": {@code target} is the package directory or file, {@code goToolArgs} the tool arguments. */
    GO("go"),
    /** PyCharm "Python": {@code executable} is the interpreter, {@code target} the script (or module). */
    PYTHON("python"),
    /** "Node.js": {@code executable} is node, {@code target} the JavaScript file. */
    NODE("node");

    private final String debugType;

    RunKind(String debugType) {
        this.debugType = debugType;
    }

    public String debugType() {
        return debugType;
    }
}
