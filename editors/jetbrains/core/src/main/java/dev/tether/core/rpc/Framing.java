package dev.tether.core.rpc;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * LSP base-protocol framing: {@code Content-Length: N\r\n\r\n} followed by N bytes of JSON.
 * The limits are the daemon's (see docs/editor-protocol.md): a larger message is refused.
 */
public final class Framing {
    /** The largest body either side accepts (16 MiB). */
    public static final int MAX_MESSAGE = 16 << 20;
    /** The largest header block. */
    public static final int MAX_HEADER = 8 << 10;

    private Framing() {}

    /** One framed message. */
    public static byte[] encode(byte[] body) {
        byte[] header = ("Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII);
        byte[] out = new byte[header.length + body.length];
        System.arraycopy(header, 0, out, 0, header.length);
        System.arraycopy(body, 0, out, header.length, body.length);
        return out;
    }

    /** A malformed or oversized frame: the rest of the stream cannot be trusted. */
    public static final class FrameException extends IOException {
        public FrameException(String message) {
            super(message);
        }
    }

    /**
     * The next message body from {@code in}; {@code null} at a clean end of stream (between
     * messages). Not buffered beyond the frame: reads the header byte by byte, then the body.
     */
    public static byte[] read(InputStream in) throws IOException {
        ByteArrayOutputStream header = new ByteArrayOutputStream(64);
        int state = 0; // how much of "\r\n\r\n" was seen
        while (state < 4) {
            int b = in.read();
            if (b < 0) {
                if (header.size() == 0) {
                    return null;
                }
                throw new EOFException("the stream ended inside a message header");
            }
            header.write(b);
            if (header.size() > MAX_HEADER) {
                throw new FrameException("message header longer than " + MAX_HEADER + " bytes");
            }
            state = switch (state) {
                case 0, 2 -> b == '\r' ? state + 1 : 0;
                case 1, 3 -> b == '\n' ? state + 1 : (b == '\r' ? 1 : 0);
                default -> 0;
            };
        }
        byte[] raw = header.toByteArray();
        int length = contentLength(new String(raw, 0, raw.length - 4, StandardCharsets.UTF_8));
        byte[] body = in.readNBytes(length);
        if (body.length < length) {
            throw new EOFException("the stream ended inside a message body");
        }
        return body;
    }

    /** The body length a header block (without its blank line) announces. */
    static int contentLength(String header) throws FrameException {
        Long length = null;
        for (String line : header.split("\r\n", -1)) {
            int colon = line.indexOf(':');
            if (colon < 0) {
                throw new FrameException("malformed message header: line \"" + line + "\" is not `Name: value`");
            }
            if (line.substring(0, colon).trim().equalsIgnoreCase("content-length")) {
                String value = line.substring(colon + 1).trim();
                try {
                    length = Long.parseLong(value);
                } catch (NumberFormatException e) {
                    throw new FrameException("malformed message header: Content-Length \"" + value + "\" is not a number");
                }
                if (length < 0) {
                    throw new FrameException("malformed message header: negative Content-Length");
                }
            }
        }
        if (length == null) {
            throw new FrameException("malformed message header: no Content-Length header");
        }
        if (length > MAX_MESSAGE) {
            throw new FrameException("message of " + length + " bytes exceeds the limit of " + MAX_MESSAGE + " bytes (16 MiB)");
        }
        return (int) (long) length;
    }
}
