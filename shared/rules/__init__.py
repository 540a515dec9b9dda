"""Rules below the features: what a contract checks and the code that runs obeys, said once."""
