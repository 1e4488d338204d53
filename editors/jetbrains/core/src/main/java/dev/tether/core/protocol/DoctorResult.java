package dev.tether.core.protocol;

import java.util.List;

/** {@code tether/doctor}: the findings, nothing started. */
public record DoctorResult(List<Diagnostic> diagnostics) {
    @Override
    public List<Diagnostic> diagnostics() {
        return diagnostics == null ? List.of() : diagnostics;
    }
}
