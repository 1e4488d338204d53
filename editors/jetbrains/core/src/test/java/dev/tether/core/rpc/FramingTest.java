package dev.tether.core.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class FramingTest {
    private static ByteArrayInputStream in(String s) {
        return new ByteArrayInputStream(s.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void roundTripsSeveralMessagesWithNonAsciiBodies() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] a = "{\"a\":\"ü\"}".getBytes(StandardCharsets.UTF_8); // 10 bytes
        byte[] b = "{}".getBytes(StandardCharsets.UTF_8);
        out.write(Framing.encode(a));
        out.write(Framing.encode(b));
        assertTrue(new String(out.toByteArray(), StandardCharsets.UTF_8).startsWith("Content-Length: 10\r\n\r\n"));
        ByteArrayInputStream in = new ByteArrayInputStream(out.toByteArray());
        assertArrayEquals(a, Framing.read(in));
        assertArrayEquals(b, Framing.read(in));
        assertNull(Framing.read(in));
    }

    @Test
    void headersAreCaseInsensitiveAndOthersIgnored() throws Exception {
        String msg = "content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}";
        assertEquals("{}", new String(Framing.read(in(msg)), StandardCharsets.UTF_8));
    }

    @Test
    void badFramesAreErrors() {
        assertTrue(assertThrows(Framing.FrameException.class, () -> Framing.read(in("Content-Type: x\r\n\r\n{}")))
                .getMessage().contains("no Content-Length"));
        assertTrue(assertThrows(Framing.FrameException.class, () -> Framing.read(in("Content-Length: x\r\n\r\n")))
                .getMessage().contains("not a number"));
        assertTrue(assertThrows(Framing.FrameException.class, () -> Framing.read(in("junk\r\n\r\n")))
                .getMessage().contains("Name: value"));
        assertTrue(assertThrows(Framing.FrameException.class,
                () -> Framing.read(in("Content-Length: " + (Framing.MAX_MESSAGE + 1) + "\r\n\r\n")))
                .getMessage().contains("16 MiB"));
        assertThrows(EOFException.class, () -> Framing.read(in("Content-Length: 5\r\n\r\n{}")));
        assertThrows(EOFException.class, () -> Framing.read(in("Content-Len")));
        assertThrows(Framing.FrameException.class, () -> Framing.read(in("X".repeat(Framing.MAX_HEADER + 10))));
    }
}
