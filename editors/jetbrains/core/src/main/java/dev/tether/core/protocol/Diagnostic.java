package dev.tether.core.protocol;

/** A finding of the launch doctor: {@code id} is stable (see docs/doctor.md). */
public record Diagnostic(String id, Severity severity, String message, Fix fix) {
    public boolean isError() {
        return severity == Severity.ERROR;
    }

    /** One line (two with the fix), as a log or a notification shows it. */
    public String describe() {
        String sev = severity == null ? "info" : severity.name().toLowerCase(java.util.Locale.ROOT);
        StringBuilder b = new StringBuilder("[").append(sev).append("] ").append(message).append(" (").append(id).append(')');
        if (fix != null) {
            b.append(fix.applied() ? "\n    fixed: " : "\n    fix: ").append(fix.description());
        }
        return b.toString();
    }
}
