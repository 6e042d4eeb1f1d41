"""Side panels bound to the document and the job controller."""
