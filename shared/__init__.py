"""The library both functions import: contracts, gateway, room, media, checkpoint, storage, callback, usersig, runtime."""
