"""A bound on uploaded files, which Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not cover.

Django limits the non-file part of a request (JSON bodies, form fields), but streams
uploaded files to disk whatever their size. The portal's uploads are small (a .byok file
is a few KiB, a key backup tens of KiB), so a request whose files exceed
PORTAL_MAX_BODY_BYTES is refused as RequestDataTooBig, which the error handlers answer
with 413, before it is stored anywhere.
"""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


class BoundedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: counts upload bytes and stops at the limit."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.received = 0
        if content_length and content_length > settings.PORTAL_MAX_BODY_BYTES:
            raise RequestDataTooBig("Upload larger than PORTAL_MAX_BODY_BYTES.")

    def receive_data_chunk(self, raw_data, start):
        # Content-Length can be absent (chunked) or understated: count what arrives.
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > settings.PORTAL_MAX_BODY_BYTES:
            raise RequestDataTooBig("Upload larger than PORTAL_MAX_BODY_BYTES.")
        return raw_data

    def file_complete(self, file_size):
        return None
